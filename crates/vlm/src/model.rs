//! Qwen2VLForConditionalGeneration: the vision tower's features replace the `<|image_pad|>`
//! embeddings, M-RoPE positions come from `get_rope_index`, and the decoder produces logits.

use crate::config::Qwen2VlConfig;
use crate::error::{Result, VlmError};
use crate::params::{ParamSource, Params};
use crate::rope::{self, RopeIndex};
use crate::text::{KvCache, TextModel};
use crate::vision::VisionTower;
use candle_core::{DType, Device, Tensor};

/// A model-ready batch: token ids padded on the left, the mask, and the images' patches.
#[derive(Debug, Clone)]
pub struct Batch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u32>>,
    /// [N, 1176] patches of all images in order, float32.
    pub pixel_values: Option<Tensor>,
    pub image_grid_thw: Vec<[usize; 3]>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.input_ids.len()
    }
    pub fn len(&self) -> usize {
        self.input_ids.first().map_or(0, |r| r.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sub-batch of `rows` (in that order) with their images' patches: each image belongs to
    /// the row holding its `t*h*w / merge^2` image tokens, images in row order.
    pub fn select_rows(&self, rows: &[usize], image_token_id: u32, merge_size: usize) -> Result<Batch> {
        // Which images (index range into image_grid_thw) and patch ranges each row owns.
        let mut owner = Vec::with_capacity(self.image_grid_thw.len());
        let mut img = 0;
        for (r, ids) in self.input_ids.iter().enumerate() {
            let mut pads = ids.iter().filter(|&&t| t == image_token_id).count();
            while pads > 0 {
                let g = self.image_grid_thw.get(img).ok_or_else(|| VlmError::input("more image tokens than images"))?;
                let n = g.iter().product::<usize>() / (merge_size * merge_size);
                pads =
                    pads.checked_sub(n).ok_or_else(|| VlmError::input("image tokens do not match image_grid_thw"))?;
                owner.push(r);
                img += 1;
            }
        }
        let mut starts = vec![0usize];
        for g in &self.image_grid_thw {
            starts.push(starts.last().unwrap() + g.iter().product::<usize>());
        }
        let mut grids = Vec::new();
        let mut pieces = Vec::new();
        for &r in rows {
            for (i, _) in owner.iter().enumerate().filter(|(_, &o)| o == r) {
                grids.push(self.image_grid_thw[i]);
                if let Some(px) = &self.pixel_values {
                    pieces.push(px.narrow(0, starts[i], starts[i + 1] - starts[i])?);
                }
            }
        }
        let pixel_values = if pieces.is_empty() { None } else { Some(Tensor::cat(&pieces, 0)?) };
        Ok(Batch {
            input_ids: rows.iter().map(|&r| self.input_ids[r].clone()).collect(),
            attention_mask: rows.iter().map(|&r| self.attention_mask[r].clone()).collect(),
            pixel_values,
            image_grid_thw: grids,
        })
    }
}

/// A prompt being prefilled a chunk at a time ([`Qwen2Vl::start_prefill`]).
pub struct ChunkedPrefill {
    /// [B, L, D]: the whole prompt's embeddings, image features in place.
    embeds: Tensor,
    pub rope: RopeIndex,
    pub attention_mask: Vec<Vec<u32>>,
    /// Keys and values of the positions done so far.
    pub cache: KvCache,
    done: usize,
}

impl ChunkedPrefill {
    /// Prompt positions (the padded length).
    pub fn len(&self) -> usize {
        self.attention_mask.first().map_or(0, |m| m.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Positions prefilled so far.
    pub fn done(&self) -> usize {
        self.done
    }
}

pub struct Qwen2Vl {
    pub cfg: Qwen2VlConfig,
    pub visual: VisionTower,
    pub text: TextModel,
}

impl Qwen2Vl {
    pub fn load(cfg: &Qwen2VlConfig, source: &dyn ParamSource) -> Result<Self> {
        let p = Params::new(source);
        let visual = VisionTower::load(p, &cfg.vision)?;
        let text = TextModel::load(p, &cfg.text)?;
        Ok(Qwen2Vl { cfg: cfg.clone(), visual, text })
    }

    /// Every parameter by its canonical checkpoint name (legacy layout) and checkpoint shape, in
    /// load order: derived by walking the modules, so it always holds the tensors the model
    /// computes with (views of them where inference keeps a weight transposed or fused).
    /// int8 tables come back dequantized (new float32 tensors): see [`Qwen2Vl::walk_params`] to
    /// keep them quantized.
    pub fn params(&self) -> Vec<(String, Tensor)> {
        self.walk_params(crate::linear::ParamWalk::default()).tensors
    }

    /// The parameter walk into `out` (which says whether int8 tables stay quantized).
    pub fn walk_params(&self, mut out: crate::linear::ParamWalk) -> crate::linear::ParamWalk {
        // Reshapes and transposes of live tensors cannot fail.
        self.visual.push_params(&mut out).expect("vision parameters");
        self.text.push_params(&mut out).expect("decoder parameters");
        out
    }

    /// Parameters and bytes of all weights (int8 tables at their stored size).
    pub fn footprint(&self) -> Result<crate::linear::Footprint> {
        let mut f = self.visual.footprint()?;
        f += self.text.footprint()?;
        Ok(f)
    }

    /// Stores linear weights transposed ([in, out]) for faster gemm in the prefill (10-16% per
    /// matmul at the 2B shapes), one weight at a time (no second copy of the model): the vision
    /// tower's, and the decoder's float32 ones but down_proj. Decoding reads them through
    /// [`crate::kernels::gemv::gemv_t`], as fast as the row-major kernel since its accumulator
    /// spans whole rows (measured at the 2B shape, alternating: prefill 8.08-8.39 s vs 8.59-8.80 s,
    /// decode 4.58-4.67 vs 4.30-4.38 tokens/s). Trainable (`Var`) weights are left alone.
    /// Then the decoder's q/k/v and gate/up projections are fused (see [`crate::kernels::fused`]).
    pub fn prepare_for_inference(&mut self) -> Result<()> {
        // bfloat16 weights, everywhere, are packed for the vdpbf16ps kernel (one layout for
        // prefill and decoding; see kernels::bf16).
        for lin in self.visual.linears_mut().into_iter().chain(self.text.linears_mut()) {
            lin.prepare_packed_bf16()?;
        }
        let mut lins = self.visual.linears_mut();
        // Float32 decoder weights but down_proj, whose [in, out] form gemm runs slower (233 vs
        // 256 GFLOP/s at 258 rows).
        lins.extend(
            self.text
                .linears_mut()
                .into_iter()
                .filter(|l| !l.name.ends_with("down_proj") && l.weight_dtype() == DType::F32),
        );
        for lin in lins {
            lin.prepare_dense_f32()?;
        }
        self.text.fuse_for_inference()?;
        self.visual.fuse_for_inference()?;
        Ok(())
    }

    /// Turns on per-layer activation recomputation for training forwards (vision blocks and
    /// decoder layers); gradients must then be taken with [`crate::recompute::backward`] and the
    /// returned store.
    pub fn enable_recompute(&mut self) -> std::sync::Arc<crate::recompute::SideGrads> {
        let side = std::sync::Arc::new(crate::recompute::SideGrads::default());
        self.text.recompute = Some(side.clone());
        self.visual.recompute = Some(side.clone());
        side
    }

    /// Every linear layer of the vision tower and the decoder (the LM head excepted).
    pub fn linears_mut(&mut self) -> Vec<&mut crate::linear::Linear> {
        let mut v = self.visual.linears_mut();
        v.extend(self.text.linears_mut());
        v
    }

    pub fn dtype(&self) -> DType {
        self.text.dtype()
    }

    pub fn device(&self) -> &Device {
        self.text.embed_tokens.device()
    }

    pub fn rope_index(&self, batch: &Batch) -> Result<RopeIndex> {
        rope::get_rope_index(
            &batch.input_ids,
            &batch.attention_mask,
            &batch.image_grid_thw,
            self.cfg.image_token_id,
            self.cfg.vision_start_token_id,
            self.cfg.vision.spatial_merge_size,
        )
        .map_err(VlmError::input)
    }

    /// Token embeddings with the image features scattered into the `<|image_pad|>` slots, in order.
    pub fn embed(&self, batch: &Batch) -> Result<Tensor> {
        let (b, l) = (batch.rows(), batch.len());
        let dev = self.device();
        let flat: Vec<u32> = batch.input_ids.iter().flatten().copied().collect();
        let n_img_tokens = flat.iter().filter(|&&t| t == self.cfg.image_token_id).count();
        let vocab = self.cfg.text.vocab_size as u32;
        if let Some(&bad) = flat.iter().find(|&&t| t >= vocab) {
            return Err(VlmError::input(format!("token id {bad} is outside the vocabulary ({vocab})")));
        }
        let ids = Tensor::from_vec(flat.clone(), b * l, dev)?;
        let text_emb = self.text.embed_tokens.lookup(&ids)?;
        let merged = match &batch.pixel_values {
            None => {
                if n_img_tokens > 0 {
                    return Err(VlmError::input(format!(
                        "the prompt has {n_img_tokens} image tokens but no image was given"
                    )));
                }
                text_emb
            }
            Some(px) => {
                let feats = self.visual.forward(px, &batch.image_grid_thw)?.to_dtype(text_emb.dtype())?;
                let n_feats = feats.dim(0)?;
                if n_feats != n_img_tokens {
                    return Err(VlmError::input(format!(
                        "image features and image tokens do not match: {n_feats} features, {n_img_tokens} tokens"
                    )));
                }
                // Gather from [text rows; image rows] so both paths stay differentiable.
                let all = Tensor::cat(&[&text_emb, &feats], 0)?;
                let mut k = 0u32;
                let idx: Vec<u32> = flat
                    .iter()
                    .enumerate()
                    .map(|(p, &t)| {
                        if t == self.cfg.image_token_id {
                            k += 1;
                            (b * l) as u32 + k - 1
                        } else {
                            p as u32
                        }
                    })
                    .collect();
                all.index_select(&Tensor::from_vec(idx, b * l, dev)?, 0)?
            }
        };
        Ok(merged.reshape((b, l, self.cfg.text.hidden_size))?)
    }

    /// Full-sequence forward: logits [B, L, V] in float32. With `cache`, the keys and values of the
    /// whole batch are stored in it for decoding.
    pub fn forward(&self, batch: &Batch, cache: Option<&mut KvCache>) -> Result<(Tensor, RopeIndex)> {
        let (hidden, ri) = self.forward_hidden(batch, cache)?;
        Ok((self.text.logits(&hidden)?, ri))
    }

    /// Full-sequence forward up to the final norm: hidden states [B, L, D].
    pub fn forward_hidden(&self, batch: &Batch, cache: Option<&mut KvCache>) -> Result<(Tensor, RopeIndex)> {
        self.check_context(batch)?;
        let ri = self.rope_index(batch)?;
        let embeds = self.embed(batch)?;
        let t = &self.cfg.text;
        let (cos, sin) =
            rope::mrope_cos_sin(&ri.position_ids, t.head_dim, t.rope_theta, t.mrope_section, self.device())?;
        let hidden = self.text.forward_hidden(&embeds, &cos, &sin, &batch.attention_mask, cache)?;
        Ok((hidden, ri))
    }

    /// A prompt longer than the model's context is an error.
    fn check_context(&self, batch: &Batch) -> Result<()> {
        let max_ctx = self.cfg.text.max_position_embeddings;
        if batch.len() > max_ctx {
            return Err(VlmError::input(format!(
                "the prompt is {} tokens long but the model's context is {max_ctx} (max_position_embeddings)",
                batch.len()
            )));
        }
        Ok(())
    }

    /// Starts a prompt's prefill that [`Qwen2Vl::prefill_chunk`] then runs a chunk at a time: the
    /// embeddings (image features included) and M-RoPE positions of the whole prompt are computed
    /// here, once.
    pub fn start_prefill(&self, batch: &Batch) -> Result<ChunkedPrefill> {
        self.check_context(batch)?;
        let rope = self.rope_index(batch)?;
        let embeds = self.embed(batch)?;
        Ok(ChunkedPrefill {
            embeds,
            rope,
            attention_mask: batch.attention_mask.clone(),
            cache: KvCache::new(self.cfg.text.num_hidden_layers),
            done: 0,
        })
    }

    /// Runs the next `n` prompt positions (fewer at the end) through the decoder into the prefill's
    /// cache. When the prompt is complete, returns the hidden state [B, D] of its last position;
    /// the same numbers as one whole-prompt forward, to float rounding.
    pub fn prefill_chunk(&self, p: &mut ChunkedPrefill, n: usize) -> Result<Option<Tensor>> {
        let (b, l) = (p.attention_mask.len(), p.len());
        let n = n.max(1).min(l - p.done);
        let (from, to) = (p.done, p.done + n);
        let pos: Vec<Vec<Vec<i64>>> =
            p.rope.position_ids.iter().map(|axis| axis.iter().map(|row| row[from..to].to_vec()).collect()).collect();
        let t = &self.cfg.text;
        let (cos, sin) = rope::mrope_cos_sin(&pos, t.head_dim, t.rope_theta, t.mrope_section, self.device())?;
        let keys: Vec<Vec<u32>> = p.attention_mask.iter().map(|m| m[..to].to_vec()).collect();
        let chunk = p.embeds.narrow(1, from, n)?;
        let hidden = self.text.forward_hidden(&chunk, &cos, &sin, &keys, Some(&mut p.cache))?;
        p.done = to;
        if to < l {
            return Ok(None);
        }
        Ok(Some(hidden.narrow(1, n - 1, 1)?.reshape((b, t.hidden_size))?))
    }

    /// One decoding step: `tokens` [B] appended after the cache. `rope_deltas` from the prompt's
    /// forward; `key_mask` covers cache + this token. Returns logits [B, V].
    pub fn decode_step(
        &self,
        tokens: &[u32],
        rope_deltas: &[i64],
        key_mask: &[Vec<u32>],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let b = tokens.len();
        let past = cache.len();
        if key_mask.iter().any(|m| m.len() != past + 1) {
            return Err(VlmError::input("decode_step: key_mask must cover the cache and the new token"));
        }
        if past + 1 > self.cfg.text.max_position_embeddings {
            return Err(VlmError::input("generation ran past the model's context (max_position_embeddings)"));
        }
        let dev = self.device();
        let ids = Tensor::from_vec(tokens.to_vec(), b, dev)?;
        let embeds = self.text.embed_tokens.lookup(&ids)?.reshape((b, 1, self.cfg.text.hidden_size))?;
        // After the prompt, all three M-RoPE axes advance together: position = number of real
        // (unpadded) tokens before this one + delta.
        let pos: Vec<Vec<i64>> = rope_deltas
            .iter()
            .zip(key_mask)
            .map(|(d, m)| vec![m[..past].iter().map(|&x| x as i64).sum::<i64>() + d])
            .collect();
        let pos3 = vec![pos.clone(), pos.clone(), pos];
        let t = &self.cfg.text;
        let (cos, sin) = rope::mrope_cos_sin(&pos3, t.head_dim, t.rope_theta, t.mrope_section, dev)?;
        let hidden = self.text.forward_hidden(&embeds, &cos, &sin, key_mask, Some(cache))?;
        Ok(self.text.logits(&hidden)?.squeeze(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::RandomParams;
    use std::sync::Mutex;

    /// A source that records the names and shapes asked for.
    struct Recording<'a>(&'a dyn ParamSource, Mutex<Vec<(String, Vec<usize>)>>);

    impl ParamSource for Recording<'_> {
        fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
            self.1.lock().unwrap().push((name.to_string(), shape.to_vec()));
            self.0.get(name, shape)
        }
        fn has(&self, name: &str) -> bool {
            self.0.has(name)
        }
    }

    /// The walked parameter list is exactly what was loaded — names, order and checkpoint shapes —
    /// before and after the inference preparation (transposed and fused weights are views).
    #[test]
    fn params_walk_the_modules_in_load_order() {
        for shape in [crate::shapes::Shape::Tiny, crate::shapes::Shape::TinyQwen2_5Vl] {
            params_walk_in_load_order(shape);
        }
    }

    fn params_walk_in_load_order(shape: crate::shapes::Shape) {
        let cfg = shape.config().unwrap();
        let random = RandomParams::new(DType::F32, Device::Cpu, 0.1, 0);
        let rec = Recording(&random, Mutex::new(Vec::new()));
        let mut model = Qwen2Vl::load(&cfg, &rec).unwrap();
        let loaded = rec.1.into_inner().unwrap();
        let walked = |m: &Qwen2Vl| m.params().into_iter().map(|(n, t)| (n, t.dims().to_vec())).collect::<Vec<_>>();
        assert_eq!(walked(&model), loaded);
        let before: Vec<Vec<f32>> =
            model.params().iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
        model.prepare_for_inference().unwrap();
        assert_eq!(walked(&model), loaded);
        let after: Vec<Vec<f32>> =
            model.params().iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap()).collect();
        assert_eq!(before, after, "preparing for inference changed a parameter's values");
        assert!(loaded.iter().any(|(n, _)| n == "model.layers.1.self_attn.q_proj.bias"));
        assert!(!loaded.iter().any(|(n, _)| n == "lm_head.weight"), "the tiny model ties its head");
        let has = |name: &str| loaded.iter().any(|(n, _)| n == name);
        match cfg.family {
            crate::config::Family::Qwen2Vl => {
                assert!(has("visual.blocks.1.mlp.fc2.bias") && has("visual.blocks.0.norm1.bias"))
            }
            crate::config::Family::Qwen2_5Vl => {
                assert!(has("visual.blocks.3.mlp.gate_proj.bias") && has("visual.merger.ln_q.weight"));
                assert!(!has("visual.blocks.0.norm1.bias") && !has("visual.merger.ln_q.bias"), "RMSNorms have no bias");
            }
        }
    }
}
