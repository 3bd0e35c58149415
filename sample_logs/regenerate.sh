#!/usr/bin/env bash
# Regenerates the sample logs from real training runs of examples/train_multitask.py.
# Deterministic given the seeds; run from the repository root with gradlog[torch] installed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
train() { out=$1; shift; rm -f "sample_logs/$out"; "$py" examples/train_multitask.py --no-echo --out "sample_logs/$out" "$@"; }

train healthy.jsonl --seed 0 --run-id healthy
train pointer_collapse.jsonl --seed 0 --loss-alpha 0.02 --loss-beta 1 --run-id pointer-collapse
train type_collapse.jsonl --seed 0 --loss-alpha 1 --loss-beta 0.02 --run-id type-collapse
train vanishing.jsonl --seed 0 --loss-alpha 0.01 --loss-beta 0.01 --run-id vanishing
train exploding.jsonl --seed 0 --pointer-head linear --optimizer sgd --lr 0.1 \
  --gradient-log-freq 2 --balance-freq 2 --run-id exploding
# A crash mid-write: a healthy run (another seed) cut inside its last record, as a killed
# process on a half-synced disk leaves it.
train crashed.jsonl --seed 3 --epochs 20 --run-id crashed
size=$(wc -c < sample_logs/crashed.jsonl)
head -c $((size - 60)) sample_logs/crashed.jsonl > sample_logs/crashed.tmp && mv sample_logs/crashed.tmp sample_logs/crashed.jsonl
