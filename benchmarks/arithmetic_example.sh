#!/usr/bin/env bash
# The arithmetic example (examples/arithmetic/README.md), timed, in a fresh clone of this repository.
#
#   bash benchmarks/arithmetic_example.sh [WORKDIR]      (after `make setup`)
#
# Runs exactly the example's commands: rft init, the example's params.yaml, rft cycle. Prints the wall time
# of the cycle and each stage's (their MLflow stage_seconds), the held-out pass rates with their CIs, the
# regression suite, the KL and the gate's decision (rft history).
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
r = "regression_larger"
print(f"regression suite larger: pass rate champion {m[r + '.pass_rate_champion']:.3f} -> candidate "
      f"{m[r + '.pass_rate']:.3f}; paired difference {m[r + '.pass_diff']:+.3f} [{m[r + '.pass_diff_ci_low']:+.3f}, "
      f"{m[r + '.pass_diff_ci_high']:+.3f}] (bound -{m[r + '.max_drop']:g})")

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

mlflow.set_tracking_uri("sqlite:///mlruns.db")
client = MlflowClient()
exp = client.get_experiment_by_name("rft-cycle")
runs = client.search_runs([exp.experiment_id], "tags.`rft.stage` != ''", order_by=["attributes.start_time ASC"])
print("stage seconds: " + ", ".join(f"{r.data.tags['rft.stage']} {r.data.metrics['stage_seconds']:.0f}"
                                    for r in runs if "stage_seconds" in r.data.metrics))
PY
rft history
