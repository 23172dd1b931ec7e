"""Promotion: a flow step after the DVC stages (not a stage: it would make the pipeline a cycle).

The gate (``tasks/gate.py``) reads ``reports/eval/metrics.json``. When it passes:

1. the candidate's files replace the champion folder (built beside it, then
   swapped in by a rename, so a crash leaves the old champion whole);
2. ``dvc commit champion`` records the new champion's hash in ``dvc.lock``;
3. in MLflow the ``champion`` alias of ``policy`` moves to the candidate's
   version, whose ``promotion_reason`` tag says why, and ``reward-model``'s
   ``champion`` alias moves to this cycle's reward model;
4. the flow then pushes and commits the new record (``promote.dvc_push``,
   ``promote.git_commit``; ``tasks/iterations.py``).

When it fails nothing moves: the candidate's version gets a ``rejected_reason``
tag. A cycle that crashed earlier never reaches this step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from tasks.config import Params
from tasks.gate import decide
from tasks.paths import CANDIDATE, REWARD
from tasks.paths import EVAL_METRICS as METRICS
from tasks.policy import install_policy, read_meta
from tasks.rewardmodel import meta as reward_meta


def promote(params: Params) -> dict:
    import mlflow
    from mlflow import MlflowClient

    from tasks import tracking

    tracking.setup(params.tracking)
    metrics = json.loads(METRICS.read_text())
    decision = decide(metrics, params.promote)
    cand = read_meta(CANDIDATE)
    version = cand.get("registry_version")
    client = MlflowClient()
    result = {"promoted": decision.promote, "reason": decision.summary, "policy_version": version}
    if not decision.promote:
        if version is not None:
            client.set_model_version_tag("policy", str(version), "rejected_reason", decision.summary)
        return result

    champion = Path(params.policy.champion_dir)
    old = read_meta(champion)
    install_policy(CANDIDATE, champion, {**cand, "base_md5": old.get("base_md5"),
                                         "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    _dvc("commit", "--force", "champion")
    client.set_registered_model_alias("policy", "champion", str(version))
    client.set_model_version_tag("policy", str(version), "promotion_reason", decision.summary)
    rm_version = reward_meta(REWARD).get("registry_version") if REWARD.exists() else None
    if rm_version is not None:
        client.set_registered_model_alias("reward-model", "champion", str(rm_version))
        result["reward_model_version"] = rm_version
    if mlflow.active_run() is not None:
        mlflow.set_tag("rft.champion_version", str(version))
    return result


def _dvc(*args, check: bool = True):
    return subprocess.run([sys.executable, "-m", "dvc", *args], check=check, capture_output=True, text=True)
