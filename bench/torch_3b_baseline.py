#!/usr/bin/env python3
"""Baseline: Hugging Face transformers Qwen2.5-VL at Qwen2.5-VL-3B-Instruct's shape (random weights),
CPU float32/bf16, beside torch_2b_baseline.py (a copy of shared/bench/'s) and on the same prompt:
one 384x384 image (196 visual tokens) + 60 random text tokens, then greedy decode of N tokens.
Compare with `medr1 bench --shape 3b --dtype f32|bf16` in the same session.
Usage: torch_3b_baseline.py [dtype] [new_tokens]"""
import sys, time, torch, numpy as np
from PIL import Image
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

name = sys.argv[1] if len(sys.argv) > 1 else "f32"
dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[name]
new_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 16
torch.manual_seed(0)
torch.set_num_threads(2)
# Qwen2.5-VL-3B-Instruct's config.json (vlm::shapes::Shape::Qwen2_5Vl3b).
cfg = Qwen2_5_VLConfig(**{
    "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
    "num_attention_heads": 16, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
    "tie_word_embeddings": True, "max_position_embeddings": 128000,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                      "num_heads": 16, "in_chans": 3, "out_hidden_size": 2048, "patch_size": 14,
                      "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                      "temporal_patch_size": 2}})
t0 = time.perf_counter()
with torch.device("cpu"):
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(dtype).eval()
print(f"params {sum(p.numel() for p in model.parameters())/1e9:.3f} B, init {time.perf_counter()-t0:.1f}s", flush=True)
img = Image.fromarray((np.random.default_rng(0).random((384, 384, 3)) * 255).astype(np.uint8))
px = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=401408)(images=[img], return_tensors="pt")
n_img = int(px["image_grid_thw"].prod()) // 4
text_ids = torch.randint(0, 150000, (60,))
ids = torch.cat([text_ids[:10], torch.tensor([151652]), torch.full((n_img,), 151655), torch.tensor([151653]), text_ids[10:]])[None]
mm = (ids == 151655).int()
inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=px["pixel_values"].to(dtype),
              image_grid_thw=px["image_grid_thw"], mm_token_type_ids=mm)
print("prompt tokens", ids.shape[1], "image tokens", n_img, flush=True)
with torch.no_grad():
    for rep in range(2):
        t = time.perf_counter(); model(**inputs); pre = time.perf_counter() - t
        print(f"prefill {pre:.2f}s", flush=True)
    t = time.perf_counter()
    out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    tot = time.perf_counter() - t
print(f"RESULT shape=3b dtype={name} prefill_s={pre:.2f} generate_{new_tokens}_s={tot:.2f} "
      f"decode_tok_per_s={(new_tokens-1)/max(tot-pre,1e-9):.3f}")
