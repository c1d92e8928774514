#!/usr/bin/env bash
# setup.sh: build llama.cpp (the copy vendored in llama-cpp-python's sdist) and make random-weights
# Qwen2-VL GGUFs at the real 2B shape.  Idempotent: every step is skipped when its output exists.
# Needs: Debian apt, pip (PyPI), a Python with torch + transformers (PY).  ~15 GB in /tmp, ~40 min on 2 cores.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# A venv with torch, transformers, safetensors, pillow, numpy (made here when PY is not given and
# the default venv does not exist: PyPI's torch wheel, about 5.6 GB with its CUDA libraries).
VENV=${VENV:-/tmp/torchenv}
if [ -z "${PY:-}" ]; then
  PY=$VENV/bin/python
  "$PY" -c 'import torch, transformers' 2>/dev/null || {
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch transformers safetensors pillow numpy charset_normalizer urllib3 idna certifi httpx; }
fi
LCP_VER=${LCP_VER:-0.3.36}                     # llama-cpp-python sdist that pins the llama.cpp commit
W=${W:-/tmp/lcp}                               # sdist, source, build
CK=${CK:-/tmp/qwen2vl-2b-random}               # HF checkpoint (bf16, 4.4 GB)
G=${G:-/tmp/gguf}                              # GGUFs + test image
SRC=$W/llama_cpp_python-$LCP_VER/vendor/llama.cpp
BIN=$W/build/bin
mkdir -p "$W" "$G"
log() { echo "[setup $(date +%T)] $*"; }

# 0. Tools: cmake/ninja to build, GNU time for peak RSS; the converter's Python deps.
command -v cmake >/dev/null && command -v ninja >/dev/null && [ -x /usr/bin/time ] ||
  { apt-get update -qq && apt-get install -y -qq cmake ninja-build time >/dev/null; }
"$PY" -c 'import sentencepiece, google.protobuf, yaml, tqdm, requests' 2>/dev/null ||
  "$PY" -m pip install -q sentencepiece protobuf pyyaml tqdm requests

# 1. llama.cpp source from the sdist (no git clone needed), then a native Release build of 4 tools.
[ -d "$SRC" ] || {
  [ -f "$W/llama_cpp_python-$LCP_VER.tar.gz" ] ||
    "$PY" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LCP_VER" -d "$W"
  tar xzf "$W/llama_cpp_python-$LCP_VER.tar.gz" -C "$W"; }
if ! [ -x "$BIN/llama-bench" ] || ! [ -x "$BIN/llama-quantize" ] || ! [ -x "$BIN/llama-mtmd-cli" ] || ! [ -x "$BIN/llama-server" ]; then
  log "building llama.cpp $(grep -o 'llama.cpp@[0-9a-f]*' "$W/llama_cpp_python-$LCP_VER/CHANGELOG.md" | head -1)"
  t=$SECONDS
  cmake -S "$SRC" -B "$W/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF > "$W/configure.log"
  cmake --build "$W/build" -j "$(nproc)" --target llama-bench llama-quantize llama-mtmd-cli llama-server > "$W/build.log"
  log "build took $((SECONDS - t)) s"
fi
"$BIN/llama-bench" --version 2>&1 | tail -n 2

# 2. Random-weights checkpoint laid out like Qwen2-VL-2B-Instruct (see make_checkpoint.py).
[ -f "$CK/model.safetensors" ] && [ -f "$CK/preprocessor_config.json" ] || "$PY" "$HERE/make_checkpoint.py" "$CK"

# Convert: text model (F16 and BF16) and the vision projector (--mmproj, F16).  Progress bars dropped.
conv() { [ -f "$1" ] || { log "convert -> $1"; (cd "$SRC" && "$PY" convert_hf_to_gguf.py "$CK" "${@:2}" --outfile "$1" 2>&1 |
         tr '\r' '\n' | grep -v -e '^Writing' -e '^INFO:hf-to-gguf:[a-z.0-9_]*, ' | tail -n 3); }; }
conv "$G/qwen2vl-2b-random-F16.gguf"  --outtype f16
conv "$G/qwen2vl-2b-random-BF16.gguf" --outtype bf16
conv "$G/mmproj-qwen2vl-2b-random-F16.gguf" --mmproj --outtype f16

# Quantize the text model (from the lossless BF16 file).
for q in Q8_0 Q4_K_M; do
  [ -f "$G/qwen2vl-2b-random-$q.gguf" ] || { log "quantize $q"
    "$BIN/llama-quantize" "$G/qwen2vl-2b-random-BF16.gguf" "$G/qwen2vl-2b-random-$q.gguf" "$q" 2 2>&1 | tail -n 2; }
done

# The benchmark image: 384x384 random RGB, same generator as torch_2b_baseline.py.
[ -f "$G/img384.png" ] || "$PY" -c "
import numpy as np; from PIL import Image
Image.fromarray((np.random.default_rng(0).random((384, 384, 3)) * 255).astype(np.uint8)).save('$G/img384.png')"
stat -c "%14s  %n" "$CK/model.safetensors" "$G"/*.gguf
