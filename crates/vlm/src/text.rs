//! The Qwen2 decoder (`model.*`): token embedding, layers of grouped-query attention with M-RoPE and
//! SiLU-gated MLPs under RMSNorm, the final norm, and the LM head (tied to the embedding or not).
//! The model holds no state: a [`KvCache`] is passed in, so one model can serve a training step,
//! a batch of rollouts and many server requests at once.

use crate::config::TextConfig;
use crate::embedding::Embedding;
use crate::error::Result;
use crate::linear::{Footprint, Linear, LinearKernel, ParamWalk};
use crate::ops;
use crate::params::Params;
use candle_core::{DType, Module, Tensor};
use std::sync::Arc;

/// Largest attention score buffer ([B, heads, queries, keys] float32) an inference forward
/// computes at once; longer prompts go a block of queries at a time. 64 MB: at the 2B shape
/// (12 heads) a 32k-token prompt takes 42 queries per block.
const ATTENTION_SCORE_BYTES: usize = 64 << 20;

/// Which keys each query may see: causal over absolute positions (the cache's `past` keys come
/// first) and never a padding key.
#[derive(Debug, Clone)]
enum AttentionMask {
    /// The additive mask [B, L, T] of every query, built once.
    Full(Tensor),
    /// Built a block of queries at a time from the rows' real (1) / padding (0) keys over cache
    /// and new tokens.
    Rows { past: usize, key_mask: Vec<Vec<u32>>, budget: usize },
}

impl AttentionMask {
    /// The additive mask [B, n, keys] of queries `from..from + n` (new-token positions) over the
    /// first `keys` keys (a causal block sees the cache's and those up to its last query). A large
    /// finite negative (not -inf) keeps fully masked padding rows finite (no NaN in logits or
    /// gradients); those rows are never read.
    fn keys_visible(
        &self,
        from: usize,
        n: usize,
        keys: usize,
        device: &candle_core::Device,
    ) -> candle_core::Result<Tensor> {
        match self {
            AttentionMask::Full(m) => m.narrow(1, from, n)?.narrow(2, 0, keys),
            AttentionMask::Rows { past, key_mask, .. } => {
                let (b, total) = (key_mask.len(), keys);
                let mut m = vec![0f32; b * n * total];
                for (row, row_keys) in key_mask.iter().enumerate() {
                    for i in 0..n {
                        let q = past + from + i;
                        for (j, &k) in row_keys[..total].iter().enumerate() {
                            if j > q || k == 0 {
                                m[(row * n + i) * total + j] = -1e30;
                            }
                        }
                    }
                }
                Tensor::from_vec(m, (b, n, total), device)
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// q, k and v in one product, for inference (see [`crate::kernels::fused`]).
    qkv: Option<Linear>,
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    /// gate and up in one product, for inference.
    gate_up: Option<Linear>,
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: Tensor,
    post_attention_layernorm: Tensor,
    self_attn: Attention,
    mlp: Mlp,
}

/// Keys and values of every layer, [B, kv_heads, T, head_dim] each.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(n_layers: usize) -> Self {
        KvCache { layers: vec![None; n_layers] }
    }
    pub fn len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the given batch rows, in that order (finished sequences leave the batch).
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        let dev = match self.layers.iter().flatten().next() {
            Some((k, _)) => k.device().clone(),
            None => return Ok(()),
        };
        let idx = Tensor::from_vec(rows.iter().map(|&r| r as u32).collect::<Vec<_>>(), rows.len(), &dev)?;
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(&idx, 0)?.contiguous()?;
            *v = v.index_select(&idx, 0)?.contiguous()?;
        }
        Ok(())
    }

    /// Drops the first `n` key positions (padding that every remaining row has).
    pub fn drop_front(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            let t = k.dim(2)?;
            *k = k.narrow(2, n, t - n)?.contiguous()?;
            *v = v.narrow(2, n, t - n)?.contiguous()?;
        }
        Ok(())
    }

    /// Left-pads every layer with `n` zero key positions (to be masked out).
    pub fn pad_front(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            let (b, h, _, d) = k.dims4()?;
            let z = Tensor::zeros((b, h, n, d), k.dtype(), k.device())?;
            *k = Tensor::cat(&[&z, &*k], 2)?;
            *v = Tensor::cat(&[&z, &*v], 2)?;
        }
        Ok(())
    }

    /// Appends `other`'s rows after this cache's rows; both must have the same length.
    pub fn append_rows(&mut self, other: &KvCache) -> Result<()> {
        if self.is_empty() {
            *self = other.clone();
            return Ok(());
        }
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            if let (Some((k, v)), Some((k2, v2))) = (a.as_mut(), b.as_ref()) {
                *k = Tensor::cat(&[&*k, k2], 0)?;
                *v = Tensor::cat(&[&*v, v2], 0)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct TextModel {
    pub embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    /// The LM head; tied, it computes with the embedding's table (the same tensor or int8 table).
    lm_head: Linear,
    /// Whether `lm_head` is `embed_tokens` (tied, and the checkpoint holds no `lm_head.weight`).
    tied: bool,
    pub cfg: TextConfig,
    /// When set, training forwards recompute each layer in the backward pass.
    pub recompute: Option<std::sync::Arc<crate::recompute::SideGrads>>,
    /// Largest attention score buffer an inference forward computes at once, in bytes (see
    /// [`ATTENTION_SCORE_BYTES`]).
    pub attention_score_bytes: usize,
}

impl TextModel {
    pub fn load(p: Params, cfg: &TextConfig) -> Result<Self> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let m = p.pp("model");
        let embed_tokens = m.embedding("embed_tokens.weight", cfg.vocab_size, d)?;
        let mut layers = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            let l = m.pp("layers").pp(i);
            let (a, mlp) = (l.pp("self_attn"), l.pp("mlp"));
            layers.push(DecoderLayer {
                input_layernorm: l.get("input_layernorm.weight", &[d])?,
                post_attention_layernorm: l.get("post_attention_layernorm.weight", &[d])?,
                self_attn: Attention {
                    q_proj: a.pp("q_proj").linear(nh * hd, d, true)?,
                    k_proj: a.pp("k_proj").linear(nkv * hd, d, true)?,
                    v_proj: a.pp("v_proj").linear(nkv * hd, d, true)?,
                    o_proj: a.pp("o_proj").linear(d, nh * hd, false)?,
                    qkv: None,
                },
                mlp: Mlp {
                    gate_proj: mlp.pp("gate_proj").linear(cfg.intermediate_size, d, false)?,
                    up_proj: mlp.pp("up_proj").linear(cfg.intermediate_size, d, false)?,
                    down_proj: mlp.pp("down_proj").linear(d, cfg.intermediate_size, false)?,
                    gate_up: None,
                },
            });
        }
        let norm = m.get("norm.weight", &[d])?;
        let tied = cfg.tie_word_embeddings && !p.has("lm_head.weight");
        let lm_head = match (&embed_tokens, tied) {
            (Embedding::Dense(t) | Embedding::Bf16(t), true) => Linear::named(t.clone(), None, "lm_head"),
            (Embedding::Int8(q), true) => {
                Linear { kernel: LinearKernel::Int8(q.clone()), bias: None, name: "lm_head".into(), lora: None }
            }
            (_, false) => p.pp("lm_head").linear(cfg.vocab_size, d, false)?,
        };
        Ok(TextModel {
            embed_tokens,
            layers,
            norm,
            lm_head,
            tied,
            cfg: cfg.clone(),
            recompute: None,
            attention_score_bytes: ATTENTION_SCORE_BYTES,
        })
    }

    /// Appends the decoder's checkpoint tensors, walking the layers in load order (the LM head
    /// only when it is not tied to the embedding).
    pub fn push_params(&self, out: &mut ParamWalk) -> Result<()> {
        let embed = "model.embed_tokens.weight".to_string();
        match (&self.embed_tokens, &mut out.int8) {
            (Embedding::Int8(p), Some(int8)) => int8.push((embed, p.clone())),
            (e, _) => out.tensors.push((embed, e.table()?)),
        }
        for (i, l) in self.layers.iter().enumerate() {
            out.tensors.push((format!("model.layers.{i}.input_layernorm.weight"), l.input_layernorm.clone()));
            out.tensors.push((
                format!("model.layers.{i}.post_attention_layernorm.weight"),
                l.post_attention_layernorm.clone(),
            ));
            for lin in l.linears() {
                lin.push_params(out)?;
            }
        }
        out.tensors.push(("model.norm.weight".into(), self.norm.clone()));
        if !self.tied {
            self.lm_head.push_params(out)?;
        }
        Ok(())
    }

    /// Parameters and bytes of the decoder's weights (a tied LM head counted once, as the table).
    pub fn footprint(&self) -> Result<Footprint> {
        let t = self.embed_tokens.table_dims();
        let mut f = Footprint { params: t.0 * t.1, bytes: self.embed_tokens.bytes() };
        for l in &self.layers {
            f += Footprint::of(&l.input_layernorm);
            f += Footprint::of(&l.post_attention_layernorm);
            for lin in l.linears() {
                f += lin.footprint()?;
            }
        }
        f += Footprint::of(&self.norm);
        if !self.tied {
            f += self.lm_head.footprint()?;
        }
        Ok(f)
    }

    /// Every linear layer except the LM head (which shares its weight with the embedding).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v: Vec<&mut Linear> = Vec::new();
        for l in &mut self.layers {
            let (a, m) = (&mut l.self_attn, &mut l.mlp);
            v.extend([&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj]);
            v.extend([&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]);
        }
        v
    }

    /// Fuses each layer's q/k/v and gate/up projections where their weights allow (stored
    /// [in, out] in float32: see `Qwen2Vl::prepare_for_inference`).
    pub fn fuse_for_inference(&mut self) -> Result<()> {
        for l in &mut self.layers {
            let a = &mut l.self_attn;
            // A second call finds the parts already fused (views) and keeps the fusion.
            if let Some(f) = crate::kernels::fused::fuse(&mut [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj])? {
                a.qkv = Some(f);
            }
            let m = &mut l.mlp;
            if let Some(f) = crate::kernels::fused::fuse(&mut [&mut m.gate_proj, &mut m.up_proj])? {
                m.gate_up = Some(f);
            }
        }
        Ok(())
    }

    pub fn dtype(&self) -> DType {
        self.embed_tokens.dtype()
    }

    /// Runs the decoder on `embeds` [B, L, D] (new tokens only when `cache` holds earlier ones).
    /// `cos`/`sin` [B, L, head_dim/2] come from the M-RoPE positions of the new tokens; `key_mask`
    /// [B, T_total] marks real (1) and padding (0) keys over cache + new tokens. Returns the final
    /// hidden states [B, L, D] (after the last norm).
    pub fn forward_hidden(
        &self,
        embeds: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        key_mask: &[Vec<u32>],
        cache: Option<&mut KvCache>,
    ) -> candle_core::Result<Tensor> {
        let (b, l, _) = embeds.dims3()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        let total = past + l;
        let budget = self.attention_score_bytes;
        let rows = Arc::new(AttentionMask::Rows { past, key_mask: key_mask.to_vec(), budget });
        // Inference on a long prompt: scores (and their mask) are made a block of queries at a
        // time, so memory grows linearly with the prompt; otherwise one [B, L, T] mask.
        let blocked =
            !embeds.track_op() && self.recompute.is_none() && b * self.cfg.num_attention_heads * l * total * 4 > budget;
        let mask = if blocked {
            rows
        } else {
            Arc::new(AttentionMask::Full(rows.keys_visible(0, l, total, embeds.device())?))
        };
        let cos = cos.to_dtype(DType::F32)?;
        let sin = sin.to_dtype(DType::F32)?;
        let mut x = embeds.clone();
        let mut cache = cache;
        for (i, layer) in self.layers.iter().enumerate() {
            match (&self.recompute, cache.is_none()) {
                (Some(side), true) => {
                    let (layer, cos, sin, mask, cfg) =
                        (layer.clone(), cos.clone(), sin.clone(), mask.clone(), self.cfg.clone());
                    let f = Arc::new(move |x: &Tensor| layer.forward(x, &cos, &sin, &mask, &cfg, None));
                    x = crate::recompute::checkpointed(&x, self.layers[i].tensors(), side, f)?;
                }
                _ => {
                    let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
                    x = layer.forward(&x, &cos, &sin, &mask, &self.cfg, slot)?;
                }
            }
        }
        ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)
    }

    /// LM head: hidden [.., D] -> logits [.., V] in float32.
    pub fn logits(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(DType::F32)
    }
}

impl DecoderLayer {
    /// The layer's linear layers in checkpoint order.
    fn linears(&self) -> [&Linear; 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
    }

    /// Every tensor the layer computes with (for recomputation).
    fn tensors(&self) -> Vec<Tensor> {
        let mut v = vec![self.input_layernorm.clone(), self.post_attention_layernorm.clone()];
        for lin in self.linears() {
            v.extend(lin.tensors());
        }
        v
    }

    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: &AttentionMask,
        cfg: &TextConfig,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> candle_core::Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let rep = nh / nkv;
        let h = ops::rms_norm(x, &self.input_layernorm, cfg.rms_norm_eps)?;
        let a = &self.self_attn;
        let (q, k, v) = if crate::kernels::fused::usable(&a.qkv, &[&a.q_proj, &a.k_proj, &a.v_proj], &h) {
            let y = a.qkv.as_ref().unwrap().forward(&h)?;
            (y.narrow(2, 0, nh * hd)?, y.narrow(2, nh * hd, nkv * hd)?, y.narrow(2, (nh + nkv) * hd, nkv * hd)?)
        } else {
            (a.q_proj.forward(&h)?, a.k_proj.forward(&h)?, a.v_proj.forward(&h)?)
        };
        let q = q.reshape((b, l, nh, hd))?.transpose(1, 2)?;
        let k = k.reshape((b, l, nkv, hd))?.transpose(1, 2)?;
        let v = v.reshape((b, l, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let dtype = q.dtype();
        // Rotary in float32 (transformers' table is float32). k goes back to the cache's dtype;
        // q stays float32: attention runs in float32 whatever the weights' dtype (candle's CPU
        // bf16 matmul is slow; PyTorch's bf16 kernels accumulate in float32 too).
        let q = ops::apply_rotary(&q.to_dtype(DType::F32)?.contiguous()?, cos, sin)?;
        let k = ops::apply_rotary(&k.to_dtype(DType::F32)?.contiguous()?, cos, sin)?.to_dtype(dtype)?;
        let (k, v) = match cache {
            Some(slot) => {
                let kv = match slot.take() {
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                    None => (k, v),
                };
                *slot = Some(kv.clone());
                kv
            }
            None => (k, v),
        };
        let t = k.dim(2)?;
        // Grouped-query attention without copying keys: the `rep` query heads that share a
        // key/value head are stacked along the query axis (q is [B, heads, L, hd], contiguous).
        let scale = 1.0 / (hd as f64).sqrt();
        let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
        let kt = k.t()?.contiguous()?;
        // Heads are numbered kv * rep + r, so [B, nkv, rep * n, T] is [B, heads, n, T] in memory.
        // Queries `n` against the first `keys` keys (with their mask [B, n, keys]).
        let attend = |q: &Tensor, n: usize, keys: usize, mask: &Tensor| -> candle_core::Result<Tensor> {
            let (kt, v) =
                if keys == t { (kt.clone(), v.clone()) } else { (kt.narrow(3, 0, keys)?, v.narrow(2, 0, keys)?) };
            let att = q.reshape((b, nkv, rep * n, hd))?.matmul(&kt)?.reshape((b, nh, n, keys))?;
            let att = ops::attention_softmax(&att, mask, scale)?.reshape((b, nkv, rep * n, keys))?;
            att.matmul(&v)?.reshape((b, nh, n, hd))
        };
        let o = match mask {
            AttentionMask::Full(m) => attend(&q, l, t, m)?,
            // A block of queries at a time: the scores never exceed the budget, and a block reads
            // only the keys it can see (the cache's and those up to its last query).
            rows @ AttentionMask::Rows { budget, .. } => {
                let block = (budget / (4 * b * nh * t).max(1)).clamp(1, l);
                let past = t - l;
                let mut outs = Vec::with_capacity(l.div_ceil(block));
                for from in (0..l).step_by(block) {
                    let n = block.min(l - from);
                    let keys = past + from + n;
                    let qb = q.narrow(2, from, n)?.contiguous()?;
                    outs.push(attend(&qb, n, keys, &rows.keys_visible(from, n, keys, x.device())?)?);
                }
                Tensor::cat(&outs, 2)?
            }
        };
        let o = o.transpose(1, 2)?.reshape((b, l, nh * hd))?.to_dtype(dtype)?;
        let x = (x + a.o_proj.forward(&o)?)?;
        let h = ops::rms_norm(&x, &self.post_attention_layernorm, cfg.rms_norm_eps)?;
        let m = &self.mlp;
        let gu = if crate::kernels::fused::usable(&m.gate_up, &[&m.gate_proj, &m.up_proj], &h) {
            ops::silu_glu(&m.gate_up.as_ref().unwrap().forward(&h)?)?
        } else {
            (ops::silu(&m.gate_proj.forward(&h)?)? * m.up_proj.forward(&h)?)?
        };
        x + m.down_proj.forward(&gu)?
    }
}
