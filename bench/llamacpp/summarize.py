#!/usr/bin/env python3
"""Summary table of measure.sh's logs.  Usage: summarize.py RESULTS_DIR [GGUF_DIR]
Columns (each "rep1 / rep2"):
  encode_s  vision tower + merger for the 392x392 image (196 tokens), seconds
  prefill_s whole prompt (258 tokens incl. the image) up to the first token's logits, seconds;
            llama-bench rows: the same 258 tokens as TEXT only (no image, no vision tower) = 258 / pp258 t/s
  decode    tokens/s of greedy decoding after the prefill (15 steps for 16 new tokens; llama-bench tg16: 16)
  rss_GB    peak resident set (GNU time "Maximum resident set size") of the whole process, rep 1
  load      1-min loadavg before each run, and CPU cores other processes used in the 5 s before it"""
import glob, json, os, re, sys

R = sys.argv[1]
G = sys.argv[2] if len(sys.argv) > 2 else "/tmp/gguf"


def read(p):
    try:
        return open(p, errors="replace").read()
    except OSError:
        return ""


def reps(prefix):
    return sorted(int(p.rsplit(".", 2)[-2]) for p in glob.glob(f"{R}/{prefix}.*.log"))


def rss(name):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", read(f"{R}/{name}.time"))
    return f"{int(m.group(1)) / 2**20:.2f}" if m else "-"


def rc(name):
    m = re.search(r"Exit status: (\d+)", read(f"{R}/{name}.time"))
    return int(m.group(1)) if m else None


def load(name):
    m = re.search(r"^([\d.]+) [\d.]+ [\d.]+ others=([\d.]+)", read(f"{R}/{name}.load"))
    return f"{m.group(1)}({m.group(2)})" if m else "-"


def size(*files):
    try:
        return f"{sum(os.path.getsize(f'{G}/{f}') for f in files) / 1e9:.2f}"
    except OSError:
        return "-"


def fmt(vals, nd):
    return " / ".join("-" if v is None else f"{v:.{nd}f}" for v in vals) or "-"


rows = []  # (engine, dtype, size_GB, encode, prefill, decode, rss, load, note)

for m in ["F16", "BF16", "Q8_0", "Q4_K_M"]:
    pre, dec, notes = [], [], {}
    names = [f"lb.{m}.{r}" for r in reps(f"lb.{m}")]
    for n in names:
        res = {}
        for line in read(f"{R}/{n}.log").splitlines():
            if line.startswith("{"):
                j = json.loads(line)
                res["pp" if j["n_gen"] == 0 else "tg"] = j
        pre.append(258 / res["pp"]["avg_ts"] if "pp" in res else None)
        dec.append(res["tg"]["avg_ts"] if "tg" in res else None)
        if "pp" in res:
            notes.setdefault(f"pp258 {res['pp']['avg_ts']:.1f}±{res['pp']['stddev_ts']:.1f} t/s, {len(res['pp']['samples_ts'])} reps")
    if names:
        rows.append(("llama-bench (text only)", m, size(f"qwen2vl-2b-random-{m}.gguf"), "n/a", fmt(pre, 2), fmt(dec, 2),
                     rss(names[0]), " ".join(load(n) for n in names), "; ".join(notes)))

for m in ["F16", "Q8_0", "Q4_K_M"]:
    enc, pre, dec, idec, notes = [], [], [], [], {}
    names = [f"mtmd.{m}.{r}" for r in reps(f"mtmd.{m}")]
    for n in names:
        t = read(f"{R}/{n}.log")
        e = re.search(r"mtmd batch encoding done in (\d+) ms", t)
        p = re.search(r"prompt eval time =\s+([\d.]+) ms /\s+(\d+) tokens", t)
        d = re.search(r"eval time =\s+([\d.]+) ms /\s+(\d+) runs.*?([\d.]+) tokens per second", t)
        i = re.search(r"image decoded \(batch 1/1\) in (\d+) ms", t)
        nt = re.search(r"n_tokens_batch = (\d+)", t)
        enc.append(int(e.group(1)) / 1e3 if e else None)
        pre.append(float(p.group(1)) / 1e3 if p else None)
        dec.append(float(d.group(3)) if d else None)
        idec.append(int(i.group(1)) / 1e3 if i else None)
        if p and nt:
            notes.setdefault(f"{p.group(2)} prompt tokens ({nt.group(1)} image), {d.group(2) if d else '?'} decode steps")
    if names:
        rows.append(("llama-mtmd-cli (+mmproj F16)", m,
                     size(f"qwen2vl-2b-random-{m}.gguf", "mmproj-qwen2vl-2b-random-F16.gguf"),
                     fmt(enc, 2), fmt(pre, 2), fmt(dec, 2), rss(names[0]), " ".join(load(n) for n in names),
                     "; ".join(notes) + f"; of prefill_s, LLM decode of the image embeddings {fmt(idec, 2)} s"))

for d in ["f32", "bf16", "int8", "q4"]:
    enc, pre, dec, notes = [], [], [], {}
    names = [f"medr1.{d}.{r}" for r in reps(f"medr1.{d}")]
    for n in names:
        j = next((json.loads(l) for l in read(f"{R}/{n}.log").splitlines() if l.startswith("{")), None)
        enc.append(j["vision_seconds"] if j else None)
        pre.append(j["prefill_seconds"] if j else None)
        dec.append(j["decode_tokens_per_second"] if j else None)
        if j:
            notes.setdefault(f"{j['prompt_tokens']} prompt tokens")
        elif rc(n) not in (None, 0):
            notes.setdefault(f"{n}: exit {rc(n)}")
    if names:
        rows.append(("medr1 bench", d, "in-memory", fmt(enc, 2), fmt(pre, 2), fmt(dec, 2), rss(names[0]),
                     " ".join(load(n) for n in names), "; ".join(notes)))

for d in ["f32", "bf16"]:
    pre, dec, notes, names = [], [], {}, []
    for r in reps(f"torch.{d}.1"):
        g = {}
        for k in (1, 16):
            n = f"torch.{d}.{k}.{r}"
            names.append(n)
            m = re.search(rf"RESULT .*prefill_s=([\d.]+) generate_{k}_s=([\d.]+)", read(f"{R}/{n}.log"))
            if m:
                g[k] = float(m.group(2))
                notes.setdefault(f"rep{r} generate_{k}_s={g[k]:.2f}")
            elif rc(n) is not None:
                notes.setdefault(f"{n}: {'timed out' if rc(n) in (124, 137) else 'exit ' + str(rc(n))}")
            elif not os.path.exists(f"{R}/{n}.log"):
                notes.setdefault(f"{n}: skipped")
        pre.append(g.get(1))
        dec.append(15 / (g[16] - g[1]) if 1 in g and 16 in g and g[16] > g[1] else None)
    if names:
        rows.append(("transformers", d, "in-memory", "n/a", fmt(pre, 2), fmt(dec, 3),
                     "/".join(rss(n) for n in names[:2]), " ".join(load(n) for n in names), "; ".join(notes)))

hdr = ("engine", "dtype/quant", "file_GB", "encode_s", "prefill_s", "decode_tok/s", "rss_GB", "load(others)", "notes")
w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(8)]
print(" | ".join(h.ljust(w[i]) if i < 8 else h for i, h in enumerate(hdr)))
print("-+-".join("-" * x for x in w) + "-+------")
for r in rows:
    print(" | ".join(str(c).ljust(w[i]) if i < 8 else str(c) for i, c in enumerate(r)))
