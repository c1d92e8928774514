#!/usr/bin/env bash
# measure.sh: CPU speed of Qwen2-VL at the 2B shape (random weights), 2 threads everywhere, each run REPS times,
# sequentially: llama-bench (text GGUFs), llama-mtmd-cli (text GGUF + mmproj, one image), medr1 bench,
# transformers (../torch_2b_baseline.py).  Run setup.sh first.  Logs in $R; prints one table (summarize.py).
# Env: REPS=2  STEPS="lb mtmd medr1 torch"  MEDR1_DTYPES="f32 bf16 int8 q4"  R=/tmp/bench-llamacpp  MEDR1=target/release/medr1 (run from the project root)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-/tmp/torchenv/bin/python}   # the venv setup.sh makes
B=${B:-/tmp/lcp/build/bin}; G=${G:-/tmp/gguf}; R=${R:-/tmp/bench-llamacpp}
MEDR1=${MEDR1:-target/release/medr1}; BASE=${BASE:-$HERE/../torch_2b_baseline.py}
REPS=${REPS:-2}; STEPS=${STEPS:-lb mtmd medr1 torch}
# 52 question tokens; llama.cpp's rendering of the Qwen2-VL template adds 8 (no default system prompt) and
# mtmd 2 vision markers + 196 image tokens: 258 prompt tokens, the same count as medr1's and the baseline's prompts.
Q="What imaging modality was used for this image? A)Optical Coherence Tomography, B)Electroencephalography, C)Endoscopy, D)Fluoroscopy. Answer with the letter of the correct option only."
mkdir -p "$R"; T0=$SECONDS

# CPU cores busy over 5 s (between our runs, so: other processes).
others() { local a b; a=($(head -1 /proc/stat)); sleep 5; b=($(head -1 /proc/stat))
  awk -v u=$(( b[1]+b[2]+b[3]+b[6]+b[7]+b[8] - a[1]-a[2]-a[3]-a[6]-a[7]-a[8] )) -v i=$(( b[4]+b[5] - a[4]-a[5] )) \
      -v n="$(nproc)" 'BEGIN { printf "%.2f", n * u / (u + i + 1e-9) }'; }
# Wait (poll 30 s, max 20 min) until the 1-min load is <= 1.0 plus what our own previous 2-thread run still
# contributes to it (2*exp(-dt/60)), and other processes used < 0.3 cores in the last 5 s.
END=-1000
quiet() { local o l i; for i in $(seq 40); do
    o=$(others); l=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$l" -v o="$o" -v dt=$((SECONDS - END)) 'BEGIN { exit !(o < 0.3 && l <= 1.0 + 2 * exp(-dt / 60)) }' && break
    echo "  busy: load $l, others $o cores; waiting"; sleep 25; done
  LOAD="$(cut -d' ' -f1-3 /proc/loadavg) others=$o"; }
# run NAME TIMEOUT CMD...: wait for quiet, run CMD under GNU time; $R/NAME.{log,time,load}.
run() { local n=$1 to=$2; shift 2; quiet; echo "$LOAD" > "$R/$n.load"
  echo "[$(date +%T)] $n  (load $LOAD)"
  /usr/bin/time -v -o "$R/$n.time" timeout "$to" "$@" > "$R/$n.log" 2>&1
  echo "after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$R/$n.load"; END=$SECONDS; }

for rep in $(seq "$REPS"); do for s in $STEPS; do case $s in
  lb)    # prompt processing of 258 text tokens and 16 generated tokens, 3 repetitions each (+ warmup)
         for m in F16 BF16 Q8_0 Q4_K_M; do
           run lb.$m.$rep 900 "$B/llama-bench" -m "$G/qwen2vl-2b-random-$m.gguf" -p 258 -n 16 -t 2 -r 3 -o jsonl
         done ;;
  mtmd)  # one image + question, 16 greedy tokens (EOS banned so all 16 come); -lv 4 prints llama_perf timings
         for m in F16 Q8_0 Q4_K_M; do
           run mtmd.$m.$rep 900 "$B/llama-mtmd-cli" -m "$G/qwen2vl-2b-random-$m.gguf" \
             --mmproj "$G/mmproj-qwen2vl-2b-random-F16.gguf" --image "$G/img384.png" -p "$Q" \
             -n 16 --temp 0 -t 2 -c 4096 --ignore-eos -lv 4
         done ;;
  medr1) for d in ${MEDR1_DTYPES:-f32 bf16 int8 q4}; do run medr1.$d.$rep 900 "$MEDR1" bench --shape 2b --dtype $d --new-tokens 16 --threads 2 --json; done ;;
  torch) # prefill = generate_1_s, decode = 15 / (generate_16_s - generate_1_s); bf16 gets 10 min per run
         for d in f32 bf16; do
           [ "$d" = "${SKIP:-}" ] && { echo "skip torch $d (timed out before)"; continue; }
           for k in 1 16; do
             run torch.$d.$k.$rep $([ $d = bf16 ] && echo 600 || echo 1800) "$PY" "$BASE" $d $k
             grep -qs "Exit status: 124" "$R/torch.$d.$k.$rep.time" && { SKIP=$d; break; }
           done
         done ;;
esac; done; done

echo "measure.sh: $(( (SECONDS - T0) / 60 )) min"
"$PY" "$HERE/summarize.py" "$R" "$G" | tee "$R/summary.txt"
