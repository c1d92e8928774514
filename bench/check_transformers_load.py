"""Loads a checkpoint medr1 wrote (train / sft / merge) with transformers' from_pretrained and
compares its logits with what `medr1 dump` computed for the same request (the model's inputs --
ids, mask, pixels, grids -- are taken from the dump, so only the weights and the architecture are
under test).

    medr1 dump --model RUN --request CASE.json --image-root IMAGES --out ours.safetensors
    python bench/check_transformers_load.py RUN ours.safetensors

Needs torch and transformers (>= 5); bench/llamacpp/setup.sh makes such a venv. Prints the
relative error of the logits over the unpadded positions and exits non-zero above 1e-4.
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

model_dir, ours = sys.argv[1:3]
t = load_file(ours)
model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
# transformers 5 finds the image tokens for the 3-D positions through mm_token_type_ids.
image_token = model.config.image_token_id
inputs = {
    "input_ids": t["input_ids"],
    "attention_mask": t["attention_mask"],
    "mm_token_type_ids": (t["input_ids"] == image_token).int(),
}
if "pixel_values" in t:
    inputs.update(pixel_values=t["pixel_values"], image_grid_thw=t["image_grid_thw"])
with torch.no_grad():
    logits = model(**inputs).logits
mask = t["attention_mask"].bool()
want = t["logits"]
err = ((logits - want)[mask].norm() / want[mask].norm()).item()
print(f"{type(model).__name__} from {model_dir}: logits rel err vs medr1 {err:.2e}")
sys.exit(0 if err < 1e-4 else 1)
