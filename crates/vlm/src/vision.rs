//! The vision tower (`visual.*`) of both families: Conv3d patch embedding (as a matmul over the
//! 1176-wide patch rows), 2-D rotary attention blocks restricted to spans of patches (block-diagonal
//! attention, computed span by span), and the 2x2 patch merger into the decoder's width.
//!
//! - Qwen2-VL: LayerNorms, a quick-GELU MLP (`fc1`, `fc2`); every block attends over whole images.
//! - Qwen2.5-VL: RMSNorms (eps 1e-6, fixed in the reference), a SwiGLU MLP with biases (`gate_proj`,
//!   `up_proj`, `down_proj`); blocks attend inside windows ([`crate::vision_windows`]) except those
//!   in `fullatt_block_indexes`; the patches (and the rotary table) are permuted into window order
//!   before the first block and the merged tokens put back in raster order after the merger.

use crate::config::{Family, VisionConfig};
use crate::error::Result;
use crate::linear::{Footprint, Linear, ParamWalk};
use crate::ops;
use crate::params::{Params, Scoped};
use crate::rope;
use crate::vision_windows::WindowLayout;
use candle_core::{DType, Module, Tensor};

/// The tower's norms: Qwen2-VL's LayerNorm (weight, bias) or Qwen2.5-VL's RMSNorm (weight).
#[derive(Debug, Clone)]
struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// Both families' vision norms use eps 1e-6, fixed in transformers' code (not read from the config).
const VISION_NORM_EPS: f64 = 1e-6;

impl Norm {
    fn load(p: Params, dim: usize, family: Family) -> Result<Self> {
        let weight = p.get("weight", &[dim])?;
        let bias = match family {
            Family::Qwen2Vl => Some(p.get("bias", &[dim])?),
            Family::Qwen2_5Vl => None,
        };
        Ok(Norm { weight, bias })
    }
    fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        std::iter::once(&self.weight).chain(self.bias.iter())
    }
    fn push_params(&self, name: &str, out: &mut ParamWalk) {
        out.tensors.push((format!("{name}.weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.tensors.push((format!("{name}.bias"), b.clone()));
        }
    }
    fn footprint(&self) -> Footprint {
        let mut f = Footprint::default();
        for t in self.tensors() {
            f += Footprint::of(t);
        }
        f
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.bias {
            Some(b) => ops::layer_norm(x, &self.weight, b, VISION_NORM_EPS),
            None => ops::rms_norm(x, &self.weight, VISION_NORM_EPS),
        }
    }
}

/// Default [`VisionBlock::score_bytes`]: 3 MB (see the measurement in `VisionBlock::forward`).
const SCORE_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone)]
struct VisionBlock {
    norm1: Norm,
    norm2: Norm,
    attn: VisionAttention,
    mlp: VisionMlp,
    num_heads: usize,
    /// Attends over whole image frames (Qwen2-VL: every block), else inside windows.
    full_attention: bool,
    /// Largest attention score buffer, in bytes, computed at once (heads are grouped under it).
    score_bytes: usize,
}

/// `visual.blocks.N.attn`.
#[derive(Debug, Clone)]
struct VisionAttention {
    qkv: Linear,
    proj: Linear,
}

/// `visual.blocks.N.mlp`.
#[derive(Debug, Clone)]
enum VisionMlp {
    /// Qwen2-VL: fc2(quick_gelu(fc1(x))).
    QuickGelu { fc1: Linear, fc2: Linear },
    /// Qwen2.5-VL: down_proj(silu(gate_proj(x)) * up_proj(x)), all with biases. `gate_up` is the
    /// inference fusion of the two (see [`crate::kernels::fused`]).
    SwiGlu { gate_proj: Linear, up_proj: Linear, down_proj: Linear, gate_up: Option<Linear> },
}

impl VisionMlp {
    fn load(p: Scoped, cfg: &VisionConfig) -> Result<Self> {
        let (e, i) = (cfg.embed_dim, cfg.intermediate_size);
        Ok(match cfg.family {
            Family::Qwen2Vl => {
                VisionMlp::QuickGelu { fc1: p.pp("fc1").linear(i, e, true)?, fc2: p.pp("fc2").linear(e, i, true)? }
            }
            Family::Qwen2_5Vl => VisionMlp::SwiGlu {
                gate_proj: p.pp("gate_proj").linear(i, e, true)?,
                up_proj: p.pp("up_proj").linear(i, e, true)?,
                down_proj: p.pp("down_proj").linear(e, i, true)?,
                gate_up: None,
            },
        })
    }
    fn linears(&self) -> Vec<&Linear> {
        match self {
            VisionMlp::QuickGelu { fc1, fc2 } => vec![fc1, fc2],
            VisionMlp::SwiGlu { gate_proj, up_proj, down_proj, .. } => vec![gate_proj, up_proj, down_proj],
        }
    }
    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        match self {
            VisionMlp::QuickGelu { fc1, fc2 } => vec![fc1, fc2],
            VisionMlp::SwiGlu { gate_proj, up_proj, down_proj, .. } => vec![gate_proj, up_proj, down_proj],
        }
    }
    /// Fuses gate_proj and up_proj into one product (float32 inference weights only).
    fn fuse_for_inference(&mut self) -> Result<()> {
        if let VisionMlp::SwiGlu { gate_proj, up_proj, gate_up, .. } = self {
            if let Some(f) = crate::kernels::fused::fuse(&mut [gate_proj, up_proj])? {
                *gate_up = Some(f);
            }
        }
        Ok(())
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            VisionMlp::QuickGelu { fc1, fc2 } => fc2.forward(&ops::quick_gelu(&fc1.forward(x)?)?),
            VisionMlp::SwiGlu { gate_proj, up_proj, down_proj, gate_up } => {
                let h = if crate::kernels::fused::usable(gate_up, &[gate_proj, up_proj], x) {
                    ops::silu_glu(&gate_up.as_ref().unwrap().forward(x)?)?
                } else {
                    (ops::silu(&gate_proj.forward(x)?)? * up_proj.forward(x)?)?
                };
                down_proj.forward(&h)
            }
        }
    }
}

/// `visual.merger`: the norm, then the 2x2-merged patches through Linear, GELU, Linear.
#[derive(Debug, Clone)]
struct PatchMerger {
    ln_q: Norm,
    /// `mlp.0` and `mlp.2` (`mlp.1` is the GELU).
    mlp_0: Linear,
    mlp_2: Linear,
}

impl VisionBlock {
    fn linears(&self) -> Vec<&Linear> {
        let mut v = vec![&self.attn.qkv, &self.attn.proj];
        v.extend(self.mlp.linears());
        v
    }

    /// Every tensor the block computes with (for recomputation).
    fn tensors(&self) -> Vec<Tensor> {
        let mut v: Vec<Tensor> = self.norm1.tensors().chain(self.norm2.tensors()).cloned().collect();
        for lin in self.linears() {
            v.extend(lin.tensors());
        }
        v
    }

    /// `x` [N, E] holds the patches of all images; `spans` gives the patch ranges that attend among
    /// themselves (image frames or windows).
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, spans: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        let (n, e) = x.dims2()?;
        let hd = e / self.num_heads;
        let h = self.norm1.forward(x)?;
        let qkv = self.attn.qkv.forward(&h)?;
        let o = if !qkv.track_op() && !cos.track_op() && qkv.device().is_cpu() {
            self.fused_attention(&qkv, cos, sin, spans)?
        } else {
            self.attention(&qkv.reshape((n, 3, self.num_heads, hd))?, cos, sin, spans)?
        };
        let x = (x + self.attn.proj.forward(&o.to_dtype(x.dtype())?)?)?;
        let h = self.mlp.forward(&self.norm2.forward(&x)?)?;
        x + h
    }

    /// Inference: [`crate::kernels::vision_attention`] on qkv and the rotary tables (float32, read in place).
    fn fused_attention(
        &self,
        qkv: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        spans: &[(usize, usize)],
    ) -> candle_core::Result<Tensor> {
        let (n, e3) = qkv.dims2()?;
        let hd = e3 / 3 / self.num_heads;
        let f32_contiguous = |t: &Tensor| t.to_dtype(DType::F32)?.contiguous();
        let (qkv, cos, sin) = (f32_contiguous(qkv)?, f32_contiguous(cos)?, f32_contiguous(sin)?);
        // Read in place: a copy of qkv cost 2-3 ms per block at the 2B shape.
        let o = crate::kernels::dense::with_f32(&qkv, |qkv| {
            crate::kernels::dense::with_f32(&cos, |cos| {
                crate::kernels::dense::with_f32(&sin, |sin| {
                    crate::kernels::vision_attention::attention(qkv, self.num_heads, hd, cos, sin, spans)
                })
            })
        })
        .flatten()
        .flatten();
        match o {
            Some(o) => Tensor::from_vec(o, (n, e3 / 3), qkv.device()),
            None => candle_core::bail!("vision attention: CPU tensors expected"),
        }
    }

    /// The differentiable attention (training): `qkv` [N, 3, heads, hd]; returns [N, E] in float32.
    fn attention(
        &self,
        qkv: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        spans: &[(usize, usize)],
    ) -> candle_core::Result<Tensor> {
        let (n, _, _, hd) = qkv.dims4()?;
        let e = self.num_heads * hd;
        // [N, heads, hd] -> [1, heads, N, hd] so the rotary helper sees [B, H, L, D]. Attention
        // runs in float32 whatever the weights' dtype (candle's CPU bf16 matmul is slow, and
        // float32 accumulation is what PyTorch's bf16 kernels do too).
        let rot = |t: Tensor| -> candle_core::Result<Tensor> {
            let t32 = t.transpose(0, 1)?.unsqueeze(0)?.contiguous()?.to_dtype(DType::F32)?;
            ops::apply_rotary(&t32, &cos.unsqueeze(0)?, &sin.unsqueeze(0)?)
        };
        let q = rot(qkv.narrow(1, 0, 1)?.squeeze(1)?)?;
        let k = rot(qkv.narrow(1, 1, 1)?.squeeze(1)?)?;
        let v = qkv.narrow(1, 2, 1)?.squeeze(1)?.transpose(0, 1)?.unsqueeze(0)?.contiguous()?.to_dtype(DType::F32)?;
        // Scale q (small) rather than the scores (large).
        let q = (q * (1.0 / (hd as f64).sqrt()))?;
        let mut outs = Vec::with_capacity(spans.len());
        for &(s, len) in spans {
            // Heads in groups whose score matrices stay under 3 MB: fresh huge buffers cost page
            // faults on every block, and candle's batched matmul over several heads is slower
            // than one head at a time. At the 2B shape (784 patches: one head per group) the
            // attention of a block takes 24 ms, against 51 ms in groups of 3 heads (8 MB) and 73
            // ms in groups of 2 or 4 (measured); the tower went from 5.3 to 4.6-5.0 s.
            let group = (self.score_bytes / (4 * len * len).max(1)).clamp(1, self.num_heads);
            let mut heads = Vec::with_capacity(self.num_heads.div_ceil(group));
            for h0 in (0..self.num_heads).step_by(group) {
                let g = group.min(self.num_heads - h0);
                let qs = q.narrow(1, h0, g)?.narrow(2, s, len)?;
                let ks = k.narrow(1, h0, g)?.narrow(2, s, len)?;
                let vs = v.narrow(1, h0, g)?.narrow(2, s, len)?;
                // gemm is twice as fast on a contiguous K^T than on a transposed view (k = 80).
                let att = qs.matmul(&ks.t()?.contiguous()?)?;
                let att = ops::softmax_last_dim(&att)?;
                heads.push(att.matmul(&vs)?);
            }
            outs.push(Tensor::cat(&heads, 1)?);
        }
        let o = Tensor::cat(&outs, 2)?; // [1, heads, N, hd]
        o.squeeze(0)?.transpose(0, 1)?.reshape((n, e))
    }
}

#[derive(Debug, Clone)]
pub struct VisionTower {
    patch_embed: Tensor, // [E, 1176]: the Conv3d kernel flattened, since stride == kernel size
    blocks: Vec<VisionBlock>,
    merger: PatchMerger,
    pub cfg: VisionConfig,
    /// When set, training forwards recompute each block in the backward pass.
    pub recompute: Option<std::sync::Arc<crate::recompute::SideGrads>>,
}

impl VisionTower {
    pub fn load(p: Params, cfg: &VisionConfig) -> Result<Self> {
        let e = cfg.embed_dim;
        let v = p.pp("visual");
        let pe = v.get("patch_embed.proj.weight", &Self::patch_embed_shape(cfg))?;
        let patch_embed = pe.reshape((e, cfg.patch_dim()))?;
        let mut blocks = Vec::new();
        for i in 0..cfg.depth {
            let b = v.pp("blocks").pp(i);
            let attn = b.pp("attn");
            blocks.push(VisionBlock {
                norm1: Norm::load(b.pp("norm1").params(), e, cfg.family)?,
                norm2: Norm::load(b.pp("norm2").params(), e, cfg.family)?,
                attn: VisionAttention {
                    qkv: attn.pp("qkv").linear(3 * e, e, true)?,
                    proj: attn.pp("proj").linear(e, e, true)?,
                },
                mlp: VisionMlp::load(b.pp("mlp"), cfg)?,
                num_heads: cfg.num_heads,
                full_attention: cfg.full_attention(i),
                score_bytes: SCORE_BYTES,
            });
        }
        let m = cfg.spatial_merge_size * cfg.spatial_merge_size * e;
        let merger = v.pp("merger");
        Ok(VisionTower {
            patch_embed,
            blocks,
            merger: PatchMerger {
                ln_q: Norm::load(merger.pp("ln_q").params(), e, cfg.family)?,
                mlp_0: merger.pp("mlp.0").linear(m, m, true)?,
                mlp_2: merger.pp("mlp.2").linear(cfg.out_hidden_size, m, true)?,
            },
            cfg: cfg.clone(),
            recompute: None,
        })
    }

    /// The Conv3d kernel's checkpoint shape [E, C, T, P, P].
    fn patch_embed_shape(cfg: &VisionConfig) -> [usize; 5] {
        [cfg.embed_dim, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size]
    }

    /// Appends the tower's checkpoint tensors, walking the modules in load order.
    pub fn push_params(&self, out: &mut ParamWalk) -> Result<()> {
        let pe = self.patch_embed.reshape(&Self::patch_embed_shape(&self.cfg)[..])?;
        out.tensors.push(("visual.patch_embed.proj.weight".into(), pe));
        for (i, b) in self.blocks.iter().enumerate() {
            b.norm1.push_params(&format!("visual.blocks.{i}.norm1"), out);
            b.norm2.push_params(&format!("visual.blocks.{i}.norm2"), out);
            for lin in b.linears() {
                lin.push_params(out)?;
            }
        }
        self.merger.ln_q.push_params("visual.merger.ln_q", out);
        self.merger.mlp_0.push_params(out)?;
        self.merger.mlp_2.push_params(out)?;
        Ok(())
    }

    /// Parameters and bytes of the tower's weights.
    pub fn footprint(&self) -> Result<Footprint> {
        let mut f = Footprint::of(&self.patch_embed);
        for b in &self.blocks {
            f += b.norm1.footprint();
            f += b.norm2.footprint();
            for lin in b.linears() {
                f += lin.footprint()?;
            }
        }
        f += self.merger.ln_q.footprint();
        f += self.merger.mlp_0.footprint()?;
        f += self.merger.mlp_2.footprint()?;
        Ok(f)
    }

    /// Fuses each Qwen2.5-VL block's gate and up projections (after `prepare_dense_f32`).
    pub fn fuse_for_inference(&mut self) -> Result<()> {
        for b in &mut self.blocks {
            b.mlp.fuse_for_inference()?;
        }
        Ok(())
    }

    /// Every linear layer, for in-place preparation (e.g. transposed inference weights).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v: Vec<&mut Linear> = Vec::new();
        for b in &mut self.blocks {
            v.extend([&mut b.attn.qkv, &mut b.attn.proj]);
            v.extend(b.mlp.linears_mut());
        }
        v.extend([&mut self.merger.mlp_0, &mut self.merger.mlp_2]);
        v
    }

    /// `pixel_values` [N, 1176] for all images; returns [N / merge^2, out_hidden_size] image
    /// features, merged tokens in raster order image by image (the `<|image_pad|>` order).
    pub fn forward(&self, pixel_values: &Tensor, grids: &[[usize; 3]]) -> candle_core::Result<Tensor> {
        let dtype = self.patch_embed.dtype();
        let px = pixel_values.to_dtype(dtype)?;
        let mut x = Linear::new(self.patch_embed.clone(), None).forward(&px)?;
        let (mut cos, mut sin) =
            rope::vision_rotary(grids, self.cfg.head_dim(), self.cfg.spatial_merge_size, px.device())?;
        // cu_seqlens: one attention span per image frame.
        let mut frames = Vec::new();
        let mut s = 0;
        for &[t, h, w] in grids {
            for _ in 0..t {
                frames.push((s, h * w));
                s += h * w;
            }
        }
        if s != x.dim(0)? {
            candle_core::bail!("image_grid_thw covers {s} patches but pixel_values has {} rows", x.dim(0)?);
        }
        // Qwen2.5-VL: patches and their rotary angles in window order, once, before the blocks.
        let layout = self.cfg.window_tokens().map(|w| WindowLayout::new(grids, self.cfg.spatial_merge_size, w));
        let windows = match &layout {
            Some(l) => {
                if !l.is_identity() {
                    let order = Tensor::from_vec(l.patch_order(), s, x.device())?;
                    x = x.index_select(&order, 0)?;
                    cos = cos.index_select(&order, 0)?;
                    sin = sin.index_select(&order, 0)?;
                }
                l.windows.clone()
            }
            None => frames.clone(),
        };
        for b in &self.blocks {
            let spans = if b.full_attention { frames.clone() } else { windows.clone() };
            x = match &self.recompute {
                Some(side) => {
                    let (blk, cos, sin) = (b.clone(), cos.clone(), sin.clone());
                    let f = std::sync::Arc::new(move |x: &Tensor| blk.forward(x, &cos, &sin, &spans));
                    crate::recompute::checkpointed(&x, b.tensors(), side, f)?
                }
                None => b.forward(&x, &cos, &sin, &spans)?,
            };
        }
        let m = self.cfg.spatial_merge_size * self.cfg.spatial_merge_size * self.cfg.embed_dim;
        let h = self.merger.ln_q.forward(&x)?.reshape(((), m))?;
        let h = self.merger.mlp_0.forward(&h)?.gelu_erf()?;
        let h = self.merger.mlp_2.forward(&h)?;
        match layout.filter(|l| !l.is_identity()) {
            Some(l) => {
                let n = l.window_index.len();
                h.index_select(&Tensor::from_vec(l.reverse(), n, h.device())?, 0)
            }
            None => Ok(h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Params, RandomParams};
    use candle_core::Device;

    /// The inference kernel and the differentiable composition (with heads grouped or one at a
    /// time) compute the same attention, over two images.
    #[test]
    fn fused_and_differentiable_attention_agree() {
        let cfg = VisionConfig {
            family: Family::Qwen2Vl,
            depth: 1,
            embed_dim: 64,
            num_heads: 4,
            intermediate_size: 128,
            in_channels: 3,
            out_hidden_size: 32,
            patch_size: 14,
            spatial_merge_size: 2,
            temporal_patch_size: 2,
            window_size: 0,
            fullatt_block_indexes: vec![],
        };
        let src = RandomParams::new(DType::F32, Device::Cpu, 0.1, 3);
        let mut tower = VisionTower::load(Params::new(&src), &cfg).unwrap();
        // Two images (6x4 and 4x4 patches).
        let grids = [[1, 6, 4], [1, 4, 4]];
        let spans = [(0, 24), (24, 16)];
        let (cos, sin) = rope::vision_rotary(&grids, 16, 2, &Device::Cpu).unwrap();
        let qkv = Tensor::randn(0f32, 2.0, (40, 3 * 64), &Device::Cpu).unwrap();
        let b = &mut tower.blocks[0];
        let fused = b.fused_attention(&qkv, &cos, &sin, &spans).unwrap();
        let grouped = b.attention(&qkv.reshape((40, 3, 4, 16)).unwrap(), &cos, &sin, &spans).unwrap();
        b.score_bytes = 1;
        let one = b.attention(&qkv.reshape((40, 3, 4, 16)).unwrap(), &cos, &sin, &spans).unwrap();
        for other in [grouped, one] {
            let diff = (&fused - other).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "max difference {diff}");
        }
    }
}
