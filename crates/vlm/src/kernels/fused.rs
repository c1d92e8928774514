//! Inference-time fusion of linear layers that read the same input — the decoder's q, k and v
//! projections, and its gate and up projections: one product over the weights concatenated along
//! the output axis instead of two or three, so the input is packed for gemm once and one output
//! buffer is written. The parts keep working as views into the fused weight (nothing is stored
//! twice), so the training path and the checkpoint's parameter list still see each layer under
//! its own name.

use crate::linear::{Linear, LinearKernel};
use candle_core::{DType, Result, Tensor};

/// Concatenates `parts` (all [`LinearKernel::DenseF32`], without LoRA, all with or all without
/// bias) into one layer; each part's weight and bias become views into it. None, and nothing
/// changed, when the parts do not qualify.
pub fn fuse(parts: &mut [&mut Linear]) -> Result<Option<Linear>> {
    let qualifies = |l: &Linear| {
        matches!(&l.kernel, LinearKernel::DenseF32(w) if w.is_contiguous())
            && l.lora.is_none()
            && l.bias.as_ref().is_none_or(|b| b.dtype() == DType::F32 && !b.track_op())
    };
    if parts.len() < 2 || !parts.iter().all(|l| qualifies(l)) {
        return Ok(None);
    }
    let with_bias = parts[0].bias.is_some();
    let in_dims: Vec<usize> = parts.iter().map(|l| l.dims().map(|d| d.1)).collect::<Result<_>>()?;
    if parts.iter().any(|l| l.bias.is_some() != with_bias) || in_dims.iter().any(|&d| d != in_dims[0]) {
        return Ok(None);
    }
    let weights: Vec<&Tensor> = parts.iter().filter_map(|l| l.kernel.stored()).collect();
    let weight = Tensor::cat(&weights, 1)?;
    let bias = if with_bias {
        let bs: Vec<&Tensor> = parts.iter().map(|l| l.bias.as_ref().unwrap()).collect();
        Some(Tensor::cat(&bs, 0)?)
    } else {
        None
    };
    let mut names = Vec::new();
    let mut off = 0;
    for l in parts.iter_mut() {
        let n = l.out_dim()?;
        l.kernel = LinearKernel::DenseF32(weight.narrow(1, off, n)?);
        if let Some(b) = &bias {
            l.bias = Some(b.narrow(0, off, n)?);
        }
        names.push(l.name.clone());
        off += n;
    }
    Ok(Some(Linear { kernel: LinearKernel::DenseF32(weight), bias, name: names.join("+"), lora: None }))
}

/// Whether a fused layer may stand in for its parts on this input: no gradient is wanted and no
/// part has gained a LoRA adapter since the fusion.
pub fn usable(fused: &Option<Linear>, parts: &[&Linear], x: &Tensor) -> bool {
    fused.is_some() && !x.track_op() && parts.iter().all(|l| l.lora.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    #[test]
    fn fused_product_equals_the_parts_and_the_parts_still_work() {
        let dev = Device::Cpu;
        let mk = |out: usize, name: &str, seed: f64| {
            let w = (Tensor::arange(0f32, (out * 6) as f32, &dev).unwrap().reshape((out, 6)).unwrap() * seed)
                .unwrap()
                .sin()
                .unwrap();
            let b = (Tensor::arange(0f32, out as f32, &dev).unwrap() * seed).unwrap().cos().unwrap();
            let mut l = Linear::named(w, Some(b), name);
            l.prepare_dense_f32().unwrap();
            l
        };
        let (mut q, mut k) = (mk(5, "q", 0.3), mk(3, "k", 0.7));
        let x = Tensor::randn(0f32, 1.0, (11, 6), &dev).unwrap();
        let (yq, yk) = (q.forward(&x).unwrap(), k.forward(&x).unwrap());
        let f = fuse(&mut [&mut q, &mut k]).unwrap().unwrap();
        let y = f.forward(&x).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-5
        };
        assert!(close(&y.narrow(1, 0, 5).unwrap(), &yq));
        assert!(close(&y.narrow(1, 5, 3).unwrap(), &yk));
        // The parts, now views into the fused weight, compute what they did.
        assert!(close(&q.forward(&x).unwrap(), &yq));
        assert!(close(&k.forward(&x).unwrap(), &yk));
        // Their checkpoint tensors keep their names and [out, in] shapes.
        let mut walk = crate::linear::ParamWalk::default();
        q.push_params(&mut walk).unwrap();
        k.push_params(&mut walk).unwrap();
        let params = walk.tensors;
        let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["q.weight", "q.bias", "k.weight", "k.bias"]);
        assert_eq!(params[2].1.dims(), &[3, 6]);
        // A layer with a LoRA adapter, or one stored [out, in], is not fused.
        let mut plain = Linear::named(Tensor::ones((4, 6), DType::F32, &dev).unwrap(), None, "p");
        let mut other = mk(2, "o", 0.1);
        other.bias = None;
        assert!(fuse(&mut [&mut plain, &mut other]).unwrap().is_none());
    }
}
