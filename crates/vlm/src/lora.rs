//! LoRA (Hu et al. 2021) as PEFT computes it: a frozen linear layer `x W^T` plus a low-rank update
//! `scaling * (x A^T) B^T`, A [r, in], B [out, r], scaling = alpha / r. The base weight is left as
//! it is (shared, never copied), so "the adapter disabled" is simply the layer without it.
//! Adapters are attached to layers by module name with [`crate::linear::attach_lora`].

use candle_core::{Result, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// LoRA dropout on the adapter's input, as PEFT applies it in training. The mask is a pure
/// function of the shared `seed` (set by the trainer for each forward pass), the layer and the
/// input's shape: a layer recomputed in the backward pass draws the same mask, and a resumed run
/// draws the same masks as an uninterrupted one.
#[derive(Debug, Clone)]
pub struct LoraDropout {
    pub p: f64,
    pub seed: Arc<AtomicU64>,
    /// Distinguishes the layers.
    pub salt: u64,
}

impl LoraDropout {
    fn mask(&self, shape: &candle_core::Shape, device: &candle_core::Device) -> Result<Tensor> {
        use rand::{Rng, SeedableRng};
        let n = shape.elem_count();
        let s = self.seed.load(Ordering::SeqCst)
            ^ self.salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (n as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut rng = rand::rngs::StdRng::seed_from_u64(s);
        let keep = (1.0 / (1.0 - self.p)) as f32;
        let v: Vec<f32> = (0..n).map(|_| if rng.random::<f64>() < self.p { 0.0 } else { keep }).collect();
        Tensor::from_vec(v, shape, device)
    }
}

/// A stable per-layer salt from its module name.
pub fn salt(module: &str) -> u64 {
    module.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// [r, in]
    pub a: Tensor,
    /// [out, r]
    pub b: Tensor,
    pub scaling: f64,
    /// Applied only in training forwards (when the adapter is tracked).
    pub dropout: Option<LoraDropout>,
}

impl LoraAdapter {
    /// The update for rows `x2` [rows, in]: [rows, out].
    pub fn delta(&self, x2: &Tensor) -> Result<Tensor> {
        let dt = x2.dtype();
        let x2 = match &self.dropout {
            Some(d) if d.p > 0.0 && self.a.track_op() => (x2 * d.mask(x2.shape(), x2.device())?.to_dtype(dt)?)?,
            _ => x2.clone(),
        };
        let h = x2.matmul(&self.a.to_dtype(dt)?.t()?)?;
        h.matmul(&self.b.to_dtype(dt)?.t()?)? * self.scaling
    }

    /// B A scaled: what merging adds to the [out, in] weight.
    pub fn merged_delta(&self) -> Result<Tensor> {
        self.b.matmul(&self.a)? * self.scaling
    }
}
