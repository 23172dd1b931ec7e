#!/usr/bin/env bash
# The arithmetic example (examples/arithmetic/README.md), timed, in a fresh clone of this repository.
#
#   bash benchmarks/arithmetic_example.sh [WORKDIR]      (after `make setup`)
#
# Runs exactly the example's commands: rft init, the example's params.yaml, rft cycle. Prints the wall time
# of the cycle and each stage's, the held-out pass rates with their CIs, the KL and the gate's decision.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)/arithmetic}"
export PATH="$ROOT/.venv/bin:$PATH"
git clone -q "$ROOT" "$WORK"
cd "$WORK"
rft init
cp examples/arithmetic/params.yaml params.yaml
t0=$(date +%s)
rft cycle
t1=$(date +%s)
echo "cycle seconds: $((t1 - t0))"
python - <<'PY'
import json

m = json.load(open("reports/eval/metrics.json"))
for g in ("correct", "format", "checked"):
    p = f"grader_{g}"
    print(f"{g:8s} pass rate: champion {m[p + '.pass_rate_champion']:.3f} -> candidate {m[p + '.pass_rate']:.3f} "
          f"[{m[p + '.pass_rate_ci_low']:.3f}, {m[p + '.pass_rate_ci_high']:.3f}]; paired difference "
          f"{m[p + '.pass_diff']:+.3f} [{m[p + '.pass_diff_ci_low']:+.3f}, {m[p + '.pass_diff_ci_high']:+.3f}]")
print(f"KL {m['kl']:.3f}; held-out questions {m['heldout_prompts']}, comparisons {m['comparisons']}")
PY
rft history
