//! The model's numerical building blocks, each with two implementations:
//! candle's fused kernels (fast, but they silently drop gradients in candle 0.11: softmax_last_dim,
//! rms_norm, layer_norm, rope — upstream issues #2168, #3568, #3569) and compositions of basic ops
//! whose backward passes are correct.
//!
//! The choice is made here, per call, from the tensors themselves: if any input is tracked by the
//! autograd graph (`track_op()`: a `Var` or something computed from one), the differentiable path is
//! taken. The training path therefore cannot reach a fused kernel by accident, and inference on plain
//! tensors always gets the fast one.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor, D};

use candle_core::Result;

/// True when a gradient must flow through this call.
fn needs_grad(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// Softmax over the last dimension, computed in float32 (as transformers does for attention).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if needs_grad(&[x]) && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(Softmax { mask: None, scale: 1.0 })
    } else if needs_grad(&[x]) {
        candle_nn::ops::softmax(x, D::Minus1)
    } else if x.dtype() == DType::F32 {
        let row = x.dim(D::Minus1)?;
        map_f32(x, |v| crate::fastmath::softmax(v, row))
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// Differentiable float32 softmax over the last dimension: one fused pass forward and one backward
/// (`s * (g - sum(g * s))`). candle's composition of max, sub, exp, sum and div makes ten passes
/// over the [B, heads, L, T] attention scores and their gradients; in GRPO training of the tiny
/// model those element-wise passes took a quarter of the time.
/// With a mask it is attention's softmax(scale * scores + mask), in the same single passes.
struct Softmax {
    /// [B, L, T] contiguous float32 additive mask shared by the heads of [B, H, L, T] scores (read
    /// in place: the decoder's layers share one mask).
    mask: Option<Tensor>,
    scale: f32,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(d), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("softmax-last-dim: needs a contiguous float32 input");
        };
        let row = layout.dims().last().copied().unwrap_or(1).max(1);
        let y = match (&self.mask, layout.dims()) {
            (Some(mask), &[bb, h, l, t]) => {
                match crate::dense::with_f32(mask, |m| {
                    crate::fastmath::masked_softmax(&d[a..b], m, [bb, h, l, t], self.scale)
                }) {
                    Some(y) => y,
                    None => candle_core::bail!("softmax-last-dim: the mask must be a contiguous float32 CPU tensor"),
                }
            }
            (Some(_), _) => candle_core::bail!("softmax-last-dim: a masked softmax needs [B, H, L, T] scores"),
            (None, _) => crate::fastmath::softmax(&d[a..b], row),
        };
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let row = res.dim(D::Minus1)?.max(1);
        let s = res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Tensor::from_vec(crate::fastmath::softmax_backward(&s, &g, row, self.scale), res.shape(), res.device())
            .map(Some)
    }
}

/// Attention probabilities softmax(scale * scores + mask) for float32 `scores` [B, H, L, T] and an
/// additive `mask` [B, L, T] shared by the heads: one fused pass (and one in the backward pass),
/// differentiable with respect to the scores.
pub fn attention_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, _, l, t) = scores.dims4()?;
    if mask.dims() != [b, l, t] || scores.dtype() != DType::F32 {
        candle_core::bail!(
            "attention_softmax: scores {:?} ({:?}) and mask {:?} do not fit",
            scores.dims(),
            scores.dtype(),
            mask.dims()
        );
    }
    let op = Softmax { mask: Some(mask.to_dtype(DType::F32)?.contiguous()?), scale: scale as f32 };
    if needs_grad(&[scores]) {
        scores.contiguous()?.apply_op1(op)
    } else {
        scores.contiguous()?.apply_op1_no_bwd(&op)
    }
}

/// Applies a float32 kernel (input slice -> new buffer) to `x` (inference only: no gradient).
fn map_f32(x: &Tensor, f: impl Fn(&[f32]) -> Vec<f32>) -> Result<Tensor> {
    let x = x.contiguous()?;
    let v = match crate::dense::with_f32(&x, &f) {
        Some(v) => v,
        None => f(&x.flatten_all()?.to_vec1::<f32>()?),
    };
    Tensor::from_vec(v, x.shape(), x.device())
}

/// SiLU (the decoder MLP's activation), fused when no gradient is needed.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    if needs_grad(&[x]) || x.dtype() != DType::F32 {
        x.silu()
    } else {
        map_f32(x, |v| crate::fastmath::x_sigmoid(v, 1.0))
    }
}

/// silu(gate) * up from a fused gate-and-up output [.., 2I] -> [..., I] (inference, float32).
pub fn silu_glu(gate_up: &Tensor) -> Result<Tensor> {
    let mut dims = gate_up.dims().to_vec();
    let w = *dims.last().unwrap() / 2;
    *dims.last_mut().unwrap() = w;
    let x = gate_up.contiguous()?;
    match crate::dense::with_f32(&x, |v| crate::fastmath::silu_glu(v, w)) {
        Some(v) => Tensor::from_vec(v, dims, x.device()),
        None => candle_core::bail!("silu_glu: float32 CPU tensors only"),
    }
}

/// Qwen2RMSNorm: normalise in float32, cast back, then scale. The fused kernel serves float32
/// inference; everything else (gradients, or bf16 where transformers rounds before the scale)
/// takes the composition.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    if !needs_grad(&[x, weight]) && dtype == DType::F32 {
        return candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32);
    }
    let xf = x.to_dtype(DType::F32)?;
    let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = xf.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.to_dtype(dtype)?.broadcast_mul(weight)
}

/// torch.nn.LayerNorm over the last dimension (computed in float32).
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    if needs_grad(&[x, weight, bias]) {
        let xf = x.to_dtype(DType::F32)?;
        let mean = xf.mean_keepdim(D::Minus1)?;
        let centred = xf.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
        normed.broadcast_mul(&weight.to_dtype(DType::F32)?)?.broadcast_add(&bias.to_dtype(DType::F32)?)?.to_dtype(dtype)
    } else {
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        candle_nn::ops::layer_norm(&xf, &weight.to_dtype(DType::F32)?, &bias.to_dtype(DType::F32)?, eps as f32)?
            .to_dtype(dtype)
    }
}

/// `rotate_half`: (x1, x2) -> (-x2, x1) over the last dimension.
pub fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}

/// Non-interleaved rotary embedding `x * cos + rotate_half(x) * sin` for x of shape
/// [B, H, L, D] with `cos_half`/`sin_half` of shape [B, L, D/2] (the two halves of the full table
/// are equal for Qwen2-VL, see `rope::mrope_cos_sin`).
pub fn apply_rotary(x: &Tensor, cos_half: &Tensor, sin_half: &Tensor) -> Result<Tensor> {
    if needs_grad(&[x, cos_half, sin_half]) {
        let cos = Tensor::cat(&[cos_half, cos_half], D::Minus1)?.unsqueeze(1)?;
        let sin = Tensor::cat(&[sin_half, sin_half], D::Minus1)?.unsqueeze(1)?;
        x.broadcast_mul(&cos)?.add(&rotate_half(x)?.broadcast_mul(&sin)?)
    } else {
        let dtype = x.dtype();
        let x = x.contiguous()?;
        let c = cos_half.to_dtype(dtype)?.contiguous()?;
        let s = sin_half.to_dtype(dtype)?.contiguous()?;
        candle_nn::rotary_emb::rope(&x, &c, &s)
    }
}

/// quick_gelu (the Qwen2-VL vision MLP's activation): x * sigmoid(1.702 x). Built from basic ops
/// when a gradient is needed; one fused pass otherwise.
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    if needs_grad(&[x]) || x.dtype() != DType::F32 {
        let s = ((x * -1.702)?.exp()? + 1.0)?.recip()?;
        x.mul(&s)
    } else {
        map_f32(x, |v| crate::fastmath::x_sigmoid(v, 1.702))
    }
}

/// A linear layer `x W^T + b` whose weight may be frozen.
///
/// candle's matmul backward always computes the gradient of both operands, so a frozen plain-tensor
/// weight would still get a weight-sized gradient computed and stored (a third more backward work,
/// gigabytes at the 2B shape). When the input needs a gradient and the weight does not, the product
/// goes through [`FrozenMatmul`], whose backward computes the input's gradient only.
///
/// For inference the weight can be stored transposed ([in, out], contiguous; see
/// [`Linear::transpose_for_inference`]): gemm runs 10-16% faster on it (measured at the 2B shapes).
#[derive(Debug, Clone)]
pub struct Linear {
    /// [out, in], or [in, out] when `transposed`.
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub transposed: bool,
    /// The weight's checkpoint name (for keeping the model's parameter list in step).
    pub name: String,
    /// A LoRA adapter added to the output when present.
    pub lora: Option<crate::lora::LoraAdapter>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, transposed: false, name: String::new(), lora: None }
    }

    pub fn named(weight: Tensor, bias: Option<Tensor>, name: String) -> Self {
        Linear { weight, bias, transposed: false, name, lora: None }
    }

    /// Stores an untracked weight as [in, out]; returns the new weight's [out, in] view so the
    /// caller can keep its parameter list pointing at the same memory.
    pub fn transpose_for_inference(&mut self) -> Result<Option<Tensor>> {
        if self.transposed || self.weight.track_op() {
            return Ok(None);
        }
        self.weight = self.weight.t()?.contiguous()?;
        self.transposed = true;
        Ok(Some(self.weight.t()?))
    }

    /// Every tensor the layer computes with (weight, bias, LoRA A and B).
    pub fn tensors(&self) -> Vec<Tensor> {
        let mut v = vec![self.weight.clone()];
        v.extend(self.bias.clone());
        if let Some(l) = &self.lora {
            v.extend([l.a.clone(), l.b.clone()]);
        }
        v
    }

    pub fn out_dim(&self) -> Result<usize> {
        self.weight.dim(if self.transposed { 1 } else { 0 })
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// The weight as [in, out] (a view when stored as [out, in]).
    fn w_in_out(&self) -> Result<Tensor> {
        if self.transposed {
            Ok(self.weight.clone())
        } else {
            self.weight.t()
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let y = if x2.track_op() && !self.weight.track_op() {
            let op = FrozenMatmul { weight: self.weight.clone(), transposed: self.transposed };
            self.add_bias(x2.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(op)))?)?
        } else if x2.track_op() || self.weight.track_op() {
            self.add_bias(x2.matmul(&self.w_in_out()?)?)?
        } else if rows > crate::gemv::MAX_ROWS && !self.bias.as_ref().is_some_and(|b| b.track_op()) {
            // Inference over many rows: the bias is fused into the product when the tensors allow.
            match crate::dense::linear(&x2, &self.weight, self.transposed, self.bias.as_ref())? {
                Some(y) => y,
                None => self.add_bias(matmul_wt(&x2, &self.weight, self.transposed)?)?,
            }
        } else {
            self.add_bias(matmul_wt(&x2, &self.weight, self.transposed)?)?
        };
        let y = match &self.lora {
            Some(l) => (y + l.delta(&x2)?)?,
            None => y,
        };
        let mut out = dims;
        *out.last_mut().unwrap() = self.out_dim()?;
        y.reshape(out)
    }
}

/// `x W^T` for an untracked 2-D `x` [m, k] and `W` [n, k] (or `W^T` [k, n] when `transposed`).
/// A few rows of float32 (decoding) go through [`crate::gemv`], which streams the weight on every
/// thread; the rest through gemm.
fn matmul_wt(x: &Tensor, w: &Tensor, transposed: bool) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let n = w.dim(if transposed { 1 } else { 0 })?;
    if m <= crate::gemv::MAX_ROWS && x.dtype() == DType::F32 && w.dtype() == DType::F32 && w.is_contiguous() {
        let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let y = crate::dense::with_f32(w, |wv| {
            if transposed {
                crate::gemv::gemv_t(wv, k, n, &xv, m)
            } else {
                crate::gemv::gemv(wv, n, k, &xv, m)
            }
        });
        if let Some(y) = y {
            return Tensor::from_vec(y, (m, n), x.device());
        }
    }
    if w.dtype() == DType::BF16 && !transposed && m <= crate::gemv::MAX_ROWS && w.is_contiguous() {
        let (st, l) = w.storage_and_layout();
        if let candle_core::Storage::Cpu(CpuStorage::BF16(wv)) = &*st {
            let wv = &wv[l.start_offset()..l.start_offset() + n * k];
            let xv: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            let y = crate::gemv::gemv_bf16(wv, n, k, &xv, m);
            return Tensor::from_vec(y, (m, n), x.device())?.to_dtype(x.dtype());
        }
    }
    if w.dtype() == DType::BF16 {
        // candle's CPU bf16 gemm is slow (measured 19 s prefill at the 2B shape): widen the
        // weight and use the float32 kernels, accumulating in float32 as PyTorch's bf16 matmul does.
        let xf = x.to_dtype(DType::F32)?;
        let wf = w.to_dtype(DType::F32)?;
        let y = if transposed { xf.matmul(&wf)? } else { xf.matmul(&wf.t()?)? };
        return y.to_dtype(x.dtype());
    }
    if transposed {
        x.matmul(w)
    } else {
        x.matmul(&w.t()?)
    }
}

/// `x W^T` with a constant W: the backward pass returns only d/dx = grad W.
struct FrozenMatmul {
    weight: Tensor,
    transposed: bool,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        // Re-enter candle's own (gemm) matmul on an untracked view of the input.
        let x = Tensor::from_storage(
            candle_core::Storage::Cpu(storage.clone()),
            Shape::from(storage_len(storage)),
            candle_core::op::BackpropOp::none(),
            false,
        );
        if !layout.is_contiguous() {
            candle_core::bail!("frozen-matmul: the input must be contiguous");
        }
        let x = x.narrow(0, layout.start_offset(), layout.shape().elem_count())?.reshape(layout.shape())?;
        let y = matmul_wt(&x, &self.weight, self.transposed)?.contiguous()?;
        let shape = y.shape().clone();
        let (st, l) = y.storage_and_layout();
        match &*st {
            candle_core::Storage::Cpu(cpu) if l.start_offset() == 0 && storage_len(cpu) == shape.elem_count() => {
                Ok((cpu.clone(), shape))
            }
            candle_core::Storage::Cpu(_) => candle_core::bail!("frozen-matmul: unexpected output layout"),
            _ => candle_core::bail!("frozen-matmul: only the CPU device is supported"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // d/dx (x W^T) = grad W.
        let w_out_in = if self.transposed { self.weight.t()? } else { self.weight.clone() };
        // A bfloat16 frozen weight is widened for this product only (float32 activations).
        Ok(Some(grad_res.matmul(&w_out_in.to_dtype(grad_res.dtype())?)?))
    }
}

fn storage_len(s: &CpuStorage) -> usize {
    match s {
        CpuStorage::F32(v) => v.len(),
        CpuStorage::BF16(v) => v.len(),
        CpuStorage::F16(v) => v.len(),
        CpuStorage::F64(v) => v.len(),
        CpuStorage::U8(v) => v.len(),
        CpuStorage::U32(v) => v.len(),
        CpuStorage::I64(v) => v.len(),
        #[allow(unreachable_patterns)]
        _ => 0,
    }
}
