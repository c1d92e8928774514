//! Linear layers `x W^T + b` (plus an optional LoRA update), with the weight's kernel chosen once.
//!
//! A layer's [`LinearKernel`] says how its weight is stored and multiplied; it is decided when the
//! layer is built (a `Var` is trainable, a bfloat16 tensor is bf16, an int8 or q4 source's weight
//! is quantized, anything else frozen) or when the model is prepared for inference
//! ([`Linear::prepare_dense_f32`], [`Linear::prepare_packed_bf16`]), never per call. What a call
//! still decides, from its input, is only what autograd needs: an input that carries a gradient
//! goes through [`FrozenMatmul`] when the weight is not trained, and the rest is the untracked
//! product [`Linear::product`], where the row-count dispatch (gemv for the few rows of decoding,
//! gemm otherwise) is written once.

use crate::kernels::bf16::{self, PackedBf16};
use crate::kernels::int8::{self, PackedI8};
use crate::kernels::q4::{self, PackedQ4};
use crate::kernels::{dense, gemv};
use crate::lora::LoraAdapter;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// How a linear layer's weight is stored and multiplied.
#[derive(Debug, Clone)]
pub enum LinearKernel {
    /// A weight being trained (a `Var`, [out, in]): candle's matmul, whose backward pass computes
    /// the gradients of both operands.
    Trainable(Tensor),
    /// A constant weight in the checkpoint's [out, in] layout (float32, or another dtype candle
    /// multiplies): the input's gradient only ([`FrozenMatmul`]); without gradients, `gemv` for a
    /// few rows and the bias-fused gemm of [`dense::linear`] for many. The decoder's down_proj stays
    /// in this layout for inference (gemm runs it faster than its transpose: 256 vs 233 GFLOP/s
    /// at 258 rows).
    Frozen(Tensor),
    /// A constant float32 weight stored [in, out] for inference: gemm runs 10-16% faster on it at
    /// the 2B shapes, and `gemv_t` streams it as fast as the row-major kernel.
    DenseF32(Tensor),
    /// A constant bfloat16 weight [out, in] (the frozen base of LoRA training shares these):
    /// `gemv_bf16` for a few rows; for many, bfloat16 inputs go through the `vdpbf16ps` kernel of
    /// [`bf16`] (packed for the call) and float32 inputs are multiplied widened to float32, so
    /// float32 activations keep float32 products.
    Bf16(Tensor),
    /// A constant bfloat16 weight packed for [`bf16`]'s kernel (inference): every row count goes
    /// through `vdpbf16ps`, inputs rounded to bfloat16, accumulation in float32.
    Bf16Packed(Arc<PackedBf16>),
    /// A constant weight quantized to int8 per output channel ([`int8`]): W8A8 through VNNI for
    /// many rows, weight-only in effect for a few (two-digit inputs). Shared (`Arc`) where one table serves twice
    /// (the tied embedding and LM head).
    Int8(Arc<PackedI8>),
    /// A constant weight in 4-bit groups of 32 ([`q4`]): W4A8 through VNNI for every row count.
    Q4(Arc<PackedQ4>),
}

impl LinearKernel {
    /// The kernel a weight tensor gets when a layer is built from it.
    pub fn for_weight(weight: Tensor) -> Self {
        if weight.track_op() {
            LinearKernel::Trainable(weight)
        } else if weight.dtype() == DType::BF16 {
            LinearKernel::Bf16(weight)
        } else {
            LinearKernel::Frozen(weight)
        }
    }

    /// The stored tensor, in whatever layout the kernel keeps it (none for int8, which is not a
    /// candle tensor).
    pub fn stored(&self) -> Option<&Tensor> {
        match self {
            LinearKernel::Trainable(w) | LinearKernel::Frozen(w) | LinearKernel::DenseF32(w) => Some(w),
            LinearKernel::Bf16(weight) => Some(weight),
            LinearKernel::Int8(_) | LinearKernel::Bf16Packed(_) | LinearKernel::Q4(_) => None,
        }
    }

    /// Bytes the weight occupies.
    pub fn bytes(&self) -> usize {
        match self {
            LinearKernel::Int8(p) => p.bytes(),
            LinearKernel::Bf16Packed(p) => p.bytes(),
            LinearKernel::Q4(p) => p.bytes(),
            k => k.stored().map_or(0, |t| t.elem_count() * t.dtype().size_in_bytes()),
        }
    }

    /// Whether the stored tensor is [in, out].
    pub fn transposed(&self) -> bool {
        matches!(self, LinearKernel::DenseF32(_))
    }

    /// The weight as [out, in] (a view of the stored memory when it is kept transposed; int8
    /// dequantized to float32, a new tensor).
    pub fn weight_out_in(&self) -> Result<Tensor> {
        match self {
            LinearKernel::Int8(p) => Tensor::from_vec(p.dequantize(), (p.n, p.k), &candle_core::Device::Cpu),
            LinearKernel::Bf16Packed(p) => Tensor::from_vec(p.unpack(), (p.n, p.k), &candle_core::Device::Cpu),
            LinearKernel::Q4(p) => Tensor::from_vec(p.dequantize(), (p.n, p.k), &candle_core::Device::Cpu),
            k if k.transposed() => k.stored().expect("a float kernel").t(),
            k => Ok(k.stored().expect("a float kernel").clone()),
        }
    }
}

/// What a model's weights hold: parameter count and bytes (int8 tables at their stored size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub params: usize,
    pub bytes: usize,
}

impl Footprint {
    pub fn of(t: &Tensor) -> Footprint {
        Footprint { params: t.elem_count(), bytes: t.elem_count() * t.dtype().size_in_bytes() }
    }
}

impl std::ops::AddAssign for Footprint {
    fn add_assign(&mut self, o: Footprint) {
        self.params += o.params;
        self.bytes += o.bytes;
    }
}

/// A walk over a model's parameters in load order: float tensors, and int8 tables either kept
/// as they are (`int8` is Some: for saving them quantized) or dequantized into `tensors`.
#[derive(Default)]
pub struct ParamWalk {
    pub tensors: Vec<(String, Tensor)>,
    pub int8: Option<Vec<(String, Arc<PackedI8>)>>,
}

impl ParamWalk {
    /// A walk that keeps int8 tables quantized.
    pub fn keeping_int8() -> Self {
        ParamWalk { tensors: Vec::new(), int8: Some(Vec::new()) }
    }
}

/// A linear layer: the weight's kernel, the bias, the module's checkpoint name and a LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    pub kernel: LinearKernel,
    pub bias: Option<Tensor>,
    /// The module's checkpoint name (`model.layers.0.self_attn.q_proj`); its tensors are
    /// `{name}.weight` and `{name}.bias`.
    pub name: String,
    /// A LoRA adapter added to the output when present.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    /// A nameless layer (a product computed on the fly, such as the tied LM head).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self::named(weight, bias, String::new())
    }

    pub fn named(weight: Tensor, bias: Option<Tensor>, name: impl Into<String>) -> Self {
        Linear { kernel: LinearKernel::for_weight(weight), bias, name: name.into(), lora: None }
    }

    /// (out, in).
    pub fn dims(&self) -> Result<(usize, usize)> {
        let stored = match &self.kernel {
            LinearKernel::Int8(p) => return Ok((p.n, p.k)),
            LinearKernel::Bf16Packed(p) => return Ok((p.n, p.k)),
            LinearKernel::Q4(p) => return Ok((p.n, p.k)),
            k => k.stored().expect("a float kernel"),
        };
        let (a, b) = stored.dims2()?;
        Ok(if self.kernel.transposed() { (b, a) } else { (a, b) })
    }

    pub fn out_dim(&self) -> Result<usize> {
        Ok(self.dims()?.0)
    }

    /// The weight's candle dtype (int8, which candle lacks, reports U8).
    pub fn weight_dtype(&self) -> DType {
        match &self.kernel {
            LinearKernel::Int8(_) | LinearKernel::Q4(_) => DType::U8,
            LinearKernel::Bf16Packed(_) => DType::BF16,
            k => k.stored().expect("a float kernel").dtype(),
        }
    }

    /// Stores a constant float32 weight [in, out] for inference ([`LinearKernel::DenseF32`]).
    /// Other kernels are left alone; returns whether anything changed.
    pub fn prepare_dense_f32(&mut self) -> Result<bool> {
        self.kernel = match &self.kernel {
            LinearKernel::Frozen(w) if w.dtype() == DType::F32 => LinearKernel::DenseF32(w.t()?.contiguous()?),
            _ => return Ok(false),
        };
        Ok(true)
    }

    /// Packs a constant bfloat16 weight for the `vdpbf16ps` kernel ([`LinearKernel::Bf16Packed`]),
    /// replacing the [out, in] tensor (nothing is stored twice). Returns whether anything changed.
    pub fn prepare_packed_bf16(&mut self) -> Result<bool> {
        let LinearKernel::Bf16(w) = &self.kernel else { return Ok(false) };
        let (n, k) = w.dims2()?;
        let packed = dense::with_bf16(w, |v| PackedBf16::pack(v, n, k)).map_or_else(
            || Ok(PackedBf16::pack(&w.flatten_all()?.to_vec1::<half::bf16>()?, n, k)),
            Ok::<_, candle_core::Error>,
        )?;
        self.kernel = LinearKernel::Bf16Packed(Arc::new(packed));
        Ok(true)
    }

    /// Appends this layer's checkpoint tensors (`{name}.weight` as [out, in], `{name}.bias`); an
    /// int8 weight goes to `out.int8` when the walk keeps them, dequantized otherwise.
    pub fn push_params(&self, out: &mut ParamWalk) -> Result<()> {
        let name = format!("{}.weight", self.name);
        match (&self.kernel, &mut out.int8) {
            (LinearKernel::Int8(p), Some(int8)) => int8.push((name, p.clone())),
            (k, _) => out.tensors.push((name, k.weight_out_in()?)),
        }
        if let Some(b) = &self.bias {
            out.tensors.push((format!("{}.bias", self.name), b.clone()));
        }
        Ok(())
    }

    /// The weight's and bias's parameters and bytes (a fused layer's parts are views: count either
    /// the parts or the fused layer, not both).
    pub fn footprint(&self) -> Result<Footprint> {
        let (n, k) = self.dims()?;
        let mut f = Footprint { params: n * k, bytes: self.kernel.bytes() };
        if let Some(b) = &self.bias {
            f += Footprint::of(b);
        }
        Ok(f)
    }

    /// Every tensor the layer computes with (weight, bias, LoRA A and B), for recomputation.
    pub fn tensors(&self) -> Vec<Tensor> {
        let mut v: Vec<Tensor> = self.kernel.stored().into_iter().cloned().collect();
        v.extend(self.bias.clone());
        if let Some(l) = &self.lora {
            v.extend([l.a.clone(), l.b.clone()]);
        }
        v
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor> {
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// `x W^T` for an untracked 2-D `x` [m, k] — the row-count dispatch: a few rows of float32
    /// (decoding) stream the weight through [`gemv`] on every thread; the rest go through gemm.
    pub fn product(&self, x: &Tensor) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        let n = self.out_dim()?;
        let decode = m <= gemv::MAX_ROWS;
        match &self.kernel {
            LinearKernel::Frozen(w) | LinearKernel::DenseF32(w)
                if decode && x.dtype() == DType::F32 && w.dtype() == DType::F32 && w.is_contiguous() =>
            {
                let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
                let transposed = self.kernel.transposed();
                let y = dense::with_f32(w, |wv| {
                    if transposed {
                        gemv::gemv_t(wv, k, n, &xv, m)
                    } else {
                        gemv::gemv(wv, n, k, &xv, m)
                    }
                });
                match y {
                    Some(y) => Tensor::from_vec(y, (m, n), x.device()),
                    None => candle_product(x, w, transposed),
                }
            }
            LinearKernel::Bf16(weight) => {
                if decode {
                    let xv: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                    if let Some(y) = dense::with_bf16(weight, |wv| gemv::gemv_bf16(wv, n, k, &xv, m)) {
                        return Tensor::from_vec(y, (m, n), x.device())?.to_dtype(x.dtype());
                    }
                }
                if x.dtype() == DType::BF16 {
                    // Packing costs a copy of the weight per call (about a tenth of the product).
                    if let Some(p) = dense::with_bf16(weight, |wv| PackedBf16::pack(wv, n, k)) {
                        return bf16_product(x, &p, None);
                    }
                }
                let y = candle_product(&x.to_dtype(DType::F32)?, &weight.to_dtype(DType::F32)?, false)?;
                y.to_dtype(x.dtype())
            }
            LinearKernel::Bf16Packed(p) => bf16_product(x, p, None),
            LinearKernel::Int8(p) => int8_product(x, p, None),
            LinearKernel::Q4(p) => q4_product(x, p, None),
            k => candle_product(x, k.stored().expect("a float kernel"), k.transposed()),
        }
    }

    /// The untracked layer without its LoRA update: many float32 rows get the bias written into
    /// the output before gemm accumulates onto it ([`dense::linear`]); the rest add it after.
    fn infer(&self, x: &Tensor) -> Result<Tensor> {
        let many_rows = x.dim(0)? > gemv::MAX_ROWS;
        if let (true, LinearKernel::Frozen(w) | LinearKernel::DenseF32(w)) = (many_rows, &self.kernel) {
            if let Some(y) = dense::linear(x, w, self.kernel.transposed(), self.bias.as_ref())? {
                return Ok(y);
            }
        }
        match &self.kernel {
            LinearKernel::Int8(p) => return int8_product(x, p, self.bias.as_ref()),
            LinearKernel::Bf16Packed(p) => return bf16_product(x, p, self.bias.as_ref()),
            LinearKernel::Q4(p) => return q4_product(x, p, self.bias.as_ref()),
            _ => {}
        }
        self.add_bias(self.product(x)?)
    }
}

/// `x W^T (+ bias)` through a packed kernel, `product(x, m, bias) -> [m, n]` on float32 rows;
/// output in `x`'s dtype.
fn packed_product(
    x: &Tensor,
    n: usize,
    bias: Option<&Tensor>,
    product: impl FnOnce(&[f32], usize, Option<&[f32]>) -> Vec<f32>,
) -> Result<Tensor> {
    let (m, _) = x.dims2()?;
    let xv: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let bv: Option<Vec<f32>> = bias.map(|b| b.to_dtype(DType::F32)?.to_vec1()).transpose()?;
    Tensor::from_vec(product(&xv, m, bv.as_deref()), (m, n), x.device())?.to_dtype(x.dtype())
}

/// A packed bfloat16 weight: inputs rounded to bfloat16, float32 accumulation.
fn bf16_product(x: &Tensor, w: &PackedBf16, bias: Option<&Tensor>) -> Result<Tensor> {
    packed_product(x, w.n, bias, |x, m, b| bf16::matmul(x, m, w, b, bf16::Isa::detect()))
}

/// A 4-bit weight (W4A8).
fn q4_product(x: &Tensor, w: &PackedQ4, bias: Option<&Tensor>) -> Result<Tensor> {
    packed_product(x, w.n, bias, |x, m, b| q4::matmul(x, m, w, b, int8::Isa::detect()))
}

/// An int8 weight: the 15-bit two-digit input for the few rows of decoding (weight-only in
/// effect), W8A8 through VNNI for more.
fn int8_product(x: &Tensor, w: &PackedI8, bias: Option<&Tensor>) -> Result<Tensor> {
    packed_product(x, w.n, bias, |x, m, b| {
        let isa = int8::Isa::detect();
        if m <= gemv::MAX_ROWS {
            int8::matmul_two_digit(x, m, w, b, isa)
        } else {
            int8::matmul_w8a8(x, m, w, b, isa)
        }
    })
}

/// candle's matmul of `x` [m, k] with a weight [n, k] (or [k, n] when `transposed`).
fn candle_product(x: &Tensor, w: &Tensor, transposed: bool) -> Result<Tensor> {
    if transposed {
        x.matmul(w)
    } else {
        x.matmul(&w.t()?)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let y = match &self.kernel {
            LinearKernel::Trainable(w) => self.add_bias(x2.matmul(&w.t()?)?)?,
            // A gradient must reach the input but not the constant weight.
            _ if x2.track_op() => {
                let op = FrozenMatmul {
                    layer: Linear { kernel: self.kernel.clone(), bias: None, name: String::new(), lora: None },
                };
                self.add_bias(x2.contiguous()?.apply_op1_arc(std::sync::Arc::new(Box::new(op)))?)?
            }
            _ if self.bias.as_ref().is_some_and(|b| b.track_op()) => self.add_bias(self.product(&x2)?)?,
            _ => self.infer(&x2)?,
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

/// Attaches adapters by module name to the given layers; returns how many were attached.
pub fn attach_lora(linears: Vec<&mut Linear>, adapters: &HashMap<String, LoraAdapter>) -> usize {
    let mut n = 0;
    for lin in linears {
        if let Some(a) = adapters.get(&lin.name) {
            lin.lora = Some(a.clone());
            n += 1;
        }
    }
    n
}

/// `x W^T` with a constant W (candle's matmul backward would also compute and store a weight-sized
/// gradient nobody wants: a third more backward work, gigabytes at the 2B shape). The backward
/// pass returns only d/dx = grad W.
struct FrozenMatmul {
    /// The layer without bias or adapter: only its weight's product is used.
    layer: Linear,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        // Re-enter the untracked product on an untracked view of the input.
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
        let y = self.layer.product(&x)?.contiguous()?;
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
        // d/dx (x W^T) = grad W; a bfloat16 weight is widened for this product only.
        let w_out_in = self.layer.kernel.weight_out_in()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn lora_forward_adds_the_scaled_low_rank_update() {
        let d = Device::Cpu;
        // W [3, 2], A [1, 2], B [3, 1], scaling 2, x [1, 2] = [1, 2]:
        // x W^T = [1*1+2*0, 1*0+2*1, 1*1+2*1] = [1, 2, 3]; x A^T = 1*0.5 + 2*(-1) = -1.5;
        // update = 2 * -1.5 * [1, 0, 2] = [-3, 0, -6]; total [-2, 2, -3].
        let w = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &d).unwrap();
        let mut lin = Linear::named(w.clone(), None, "m.q_proj");
        let x = Tensor::new(&[[1f32, 2.]], &d).unwrap();
        assert_eq!(lin.forward(&x).unwrap().to_vec2::<f32>().unwrap(), vec![vec![1., 2., 3.]]);
        let a = LoraAdapter {
            a: Tensor::new(&[[0.5f32, -1.]], &d).unwrap(),
            b: Tensor::new(&[[1f32], [0.], [2.]], &d).unwrap(),
            scaling: 2.0,
            dropout: None,
        };
        assert_eq!(attach_lora(vec![&mut lin], &HashMap::from([("m.q_proj".to_string(), a.clone())])), 1);
        assert_eq!(lin.forward(&x).unwrap().to_vec2::<f32>().unwrap(), vec![vec![-2., 2., -3.]]);
        // Merging gives the same layer without the adapter.
        let merged = Linear::new((w + a.merged_delta().unwrap()).unwrap(), None);
        assert_eq!(merged.forward(&x).unwrap().to_vec2::<f32>().unwrap(), vec![vec![-2., 2., -3.]]);
    }

    /// Every kernel computes the same product, a few rows (gemv) and many (gemm), with the
    /// checkpoint view of its weight unchanged.
    #[test]
    fn every_kernel_computes_the_same_layer() {
        let d = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (7, 5), &d).unwrap();
        let b = Tensor::randn(0f32, 1.0, 7, &d).unwrap();
        let reference = |x: &Tensor| x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let frozen = Linear::named(w.clone(), Some(b.clone()), "l");
        assert!(matches!(frozen.kernel, LinearKernel::Frozen(_)));
        let mut dense = frozen.clone();
        assert!(dense.prepare_dense_f32().unwrap());
        assert!(matches!(dense.kernel, LinearKernel::DenseF32(_)));
        assert!(!dense.prepare_dense_f32().unwrap());
        let bf16 = Linear::named(w.to_dtype(DType::BF16).unwrap(), Some(b.clone()), "l");
        assert!(matches!(bf16.kernel, LinearKernel::Bf16(_)));
        // As a bf16 model holds them: bias in bfloat16 too.
        let bf16_model = Linear::named(w.to_dtype(DType::BF16).unwrap(), Some(b.to_dtype(DType::BF16).unwrap()), "l");
        let mut packed = bf16_model.clone();
        assert!(packed.prepare_packed_bf16().unwrap());
        assert!(matches!(packed.kernel, LinearKernel::Bf16Packed(_)));
        assert_eq!(packed.dims().unwrap(), (7, 5));
        for rows in [1, 3, gemv::MAX_ROWS, gemv::MAX_ROWS + 1, 40] {
            // bfloat16 inputs (as a bf16 model runs) through the unpacked and the packed kernel.
            let xb = Tensor::randn(0f32, 1.0, (rows, 5), &d).unwrap().to_dtype(DType::BF16).unwrap();
            let want = reference(&xb.to_dtype(DType::F32).unwrap());
            for (what, l) in [("bf16", &bf16_model), ("packed bf16", &packed)] {
                let got = l.forward(&xb).unwrap().to_dtype(DType::F32).unwrap();
                let err = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(err < 5e-2, "{what} at {rows} rows, bf16 input: off by {err}");
            }
        }
        let mut p = ParamWalk::default();
        packed.push_params(&mut p).unwrap();
        assert_eq!(
            p.tensors[0].1.to_vec2::<half::bf16>().unwrap(),
            w.to_dtype(DType::BF16).unwrap().to_vec2::<half::bf16>().unwrap()
        );
        for rows in [1, 3, gemv::MAX_ROWS, gemv::MAX_ROWS + 1, 40] {
            let x = Tensor::randn(0f32, 1.0, (rows, 5), &d).unwrap();
            let want = reference(&x);
            for (what, l, tol) in [("frozen", &frozen, 1e-5), ("dense", &dense, 1e-5), ("bf16", &bf16, 5e-2)] {
                let got = l.forward(&x).unwrap();
                let err = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(err < tol, "{what} at {rows} rows: off by {err}");
            }
        }
        let mut walk = ParamWalk::default();
        dense.push_params(&mut walk).unwrap();
        let params = walk.tensors;
        assert_eq!(params[0].0, "l.weight");
        assert_eq!(params[0].1.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        assert_eq!(params[1].0, "l.bias");
    }
}
