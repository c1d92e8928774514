//! The model's numerical building blocks, each with two implementations:
//! candle's fused kernels (fast, but they silently drop gradients in candle 0.11: softmax_last_dim,
//! rms_norm, layer_norm, rope — upstream issues #2168, #3568, #3569) and compositions of basic ops
//! whose backward passes are correct.
//!
//! The choice is made here, per call, from the tensors themselves: if any input is tracked by the
//! autograd graph (`track_op()`: a `Var` or something computed from one), the differentiable path is
//! taken. The training path therefore cannot reach a fused kernel by accident, and inference on plain
//! tensors always gets the fast one.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};

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
        map_f32(x, |v| crate::kernels::fastmath::softmax(v, row))
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
                match crate::kernels::dense::with_f32(mask, |m| {
                    crate::kernels::fastmath::masked_softmax(&d[a..b], m, [bb, h, l, t], self.scale)
                }) {
                    Some(y) => y,
                    None => candle_core::bail!("softmax-last-dim: the mask must be a contiguous float32 CPU tensor"),
                }
            }
            (Some(_), _) => candle_core::bail!("softmax-last-dim: a masked softmax needs [B, H, L, T] scores"),
            (None, _) => crate::kernels::fastmath::softmax(&d[a..b], row),
        };
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let row = res.dim(D::Minus1)?.max(1);
        let s = res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Tensor::from_vec(crate::kernels::fastmath::softmax_backward(&s, &g, row, self.scale), res.shape(), res.device())
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
    let v = match crate::kernels::dense::with_f32(&x, &f) {
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
        map_f32(x, |v| crate::kernels::fastmath::x_sigmoid(v, 1.0))
    }
}

/// silu(gate) * up from a fused gate-and-up output [.., 2I] -> [..., I] (inference, float32).
pub fn silu_glu(gate_up: &Tensor) -> Result<Tensor> {
    let mut dims = gate_up.dims().to_vec();
    let w = *dims.last().unwrap() / 2;
    *dims.last_mut().unwrap() = w;
    let x = gate_up.contiguous()?;
    match crate::kernels::dense::with_f32(&x, |v| crate::kernels::fastmath::silu_glu(v, w)) {
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
        map_f32(x, |v| crate::kernels::fastmath::x_sigmoid(v, 1.702))
    }
}
