#!/usr/bin/env bash
# The HH-RLHF example (examples/hh-rlhf/README.md), timed, in a fresh clone of this repository.
#
#   bash benchmarks/hh_example.sh [WORKDIR]      (after `make setup`; needs ../shared beside the project)
#
# Runs exactly the example's commands: rft init, rft import-hh, the example's params.yaml,
# rft train-reward-model (the gold judge) and rft cycle. Prints the wall time of the gold model
# and of the cycle, then reports/eval/metrics.json.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$ROOT/../shared/data/hh-rlhf-harmless/train-1200.jsonl"
WORK="${1:-$(mktemp -d)/hh}"
[ -f "$SHARED" ] || { echo "skipped: $SHARED not found"; exit 0; }
export PATH="$ROOT/.venv/bin:$PATH"
git clone -q "$ROOT" "$WORK"
cd "$WORK"
start=$(date +%s)
rft init
rft import-hh "$SHARED" data/incoming/hh
cp examples/hh-rlhf/params.yaml params.yaml
t0=$(date +%s)
rft train-reward-model data/incoming/hh/gold_pairs.jsonl data/incoming/hh/gold-reward
t1=$(date +%s)
rft cycle
t2=$(date +%s)
echo "gold seconds: $((t1 - t0)); cycle seconds: $((t2 - t1)); total $((t2 - start))"
cat reports/eval/metrics.json
