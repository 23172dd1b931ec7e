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

The gate decides only this cycle's candidate (``not_this_cycles``): never one from
``dvc exp run``, and not again one an earlier cycle decided when this cycle
evaluated nothing; a no-op cycle says "nothing to decide".
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from tasks import tracking
from tasks.config import Params, gate_training_judge
from tasks.gate import Decision, decide
from tasks.paths import CANDIDATE, REWARD
from tasks.paths import EVAL_METRICS as METRICS
from tasks.policy import install_policy, read_meta
from tasks.provenance import split_change
from tasks.rewardmodel import meta as reward_meta


def promote(params: Params, evaluated: bool = True) -> dict:
    """Run the gate on the candidate and promote it if it passes. ``evaluated``: this cycle ran the evaluate
    stage (else a candidate an earlier cycle decided is not decided again: ``not_this_cycles``)."""
    import mlflow
    from mlflow import MlflowClient

    tracking.setup(params.tracking)
    cand = read_meta(CANDIDATE)
    version = cand.get("registry_version")
    client = MlflowClient()
    gate = gate_hash(params)
    refusal = not_this_cycles(client, version, evaluated, gate)
    if refusal:
        return {"promoted": False, "reason": refusal, "policy_version": version, "decided": False}
    metrics = json.loads(METRICS.read_text())
    decision = decide(metrics, params.promote, gate_training_judge(params))
    changed = split_change(client, params.prepare.salt, params.prepare.heldout_fraction)
    if changed:
        decision = Decision(decision.promote, [*decision.reasons, changed])
    result = {"promoted": decision.promote, "reason": decision.summary, "policy_version": version, "decided": True}
    if version is not None:
        client.set_model_version_tag("policy", str(version), GATE_TAG, gate)
    if not decision.promote:
        if version is not None:
            client.set_model_version_tag("policy", str(version), "rejected_reason", decision.summary)
        return result

    champion = Path(params.policy.champion_dir)
    old = read_meta(champion)
    install_policy(CANDIDATE, champion, {**cand, "base_md5": old.get("base_md5"),
                                         "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    _commit("champion")
    client.set_registered_model_alias("policy", "champion", str(version))
    client.set_model_version_tag("policy", str(version), "promotion_reason", decision.summary)
    rm_version = reward_meta(REWARD).get("registry_version") if REWARD.exists() else None
    if rm_version is not None:
        client.set_registered_model_alias("reward-model", "champion", str(rm_version))
        result["reward_model_version"] = rm_version
    if mlflow.active_run() is not None:
        mlflow.set_tag("rft.champion_version", str(version))
    return result


GATE_TAG = "rft.gate"      # on a decided version: the hash of the promote section that decided it


def gate_hash(params: Params) -> str:
    """The md5 of the ``promote`` section: a decision holds for the gate that made it."""
    import dataclasses
    import hashlib

    from tasks.params_audit import unwrap

    blob = json.dumps(dataclasses.asdict(unwrap(params.promote)), sort_keys=True, default=str)
    return hashlib.md5(blob.encode()).hexdigest()


def not_this_cycles(client, version, evaluated: bool = False, gate: str | None = None) -> str | None:
    """Why the candidate in ``models/candidate`` is not this cycle's to promote (None: it is).

    The gate decides each candidate once, for the cycle that trained it:
    - a candidate from ``dvc exp run`` (its version tagged ``dvc.exp``) is never promoted by a cycle;
    - a candidate that an earlier cycle already promoted or refused is not decided again unless this cycle
      evaluated it anew, or (for a refusal) the gate changed: ``gate``, the ``promote`` section's hash, differs
      from the one recorded with the decision. A cycle that found nothing stale and kept the gate decides
      nothing;
    - the folder must be the one ``dvc.lock`` records for the optimize stage at this commit.
    A candidate that was evaluated but never decided (a cycle killed between evaluate and promotion) is
    decided by the next cycle.
    """
    from tasks.io import dvc_md5

    if version is None:
        return f"{CANDIDATE} has no registry version: it was not made by the optimize stage"
    tags = client.get_model_version("policy", str(version)).tags
    if tags.get(tracking.DVC_EXP_TAG):
        return (f"the candidate, policy v{version}, comes from the DVC experiment '{tags[tracking.DVC_EXP_TAG]}': "
                "experiments never move aliases. To promote it, apply it (dvc exp apply), commit, and run a cycle "
                "that trains it (rft cycle after dvc repro --force optimize)")
    same_gate = gate is None or tags.get(GATE_TAG, gate) == gate
    # A refusal holds for the gate that made it; a promoted candidate is the champion already.
    for tag, what, holds in (("promotion_reason", "promoted", True), ("rejected_reason", "refused", same_gate)):
        if tag in tags and not evaluated and holds:
            return (f"nothing new to decide: no stage was stale, and the candidate, policy v{version}, was already "
                    f"{what} by an earlier cycle ({tags[tag][:200]})")
    recorded = _locked_out("optimize", CANDIDATE)
    if recorded is not None and recorded != dvc_md5(CANDIDATE):
        return (f"{CANDIDATE} (md5 {dvc_md5(CANDIDATE)}) is not the candidate dvc.lock records for the optimize "
                f"stage ({recorded}): it was not produced by the pipeline at this commit")
    return None


def _locked_out(stage: str, path: Path) -> str | None:
    """The md5 that ``dvc.lock`` records for output ``path`` of ``stage`` (None: no record)."""
    import yaml

    lock = Path("dvc.lock")
    if not lock.exists():
        return None
    outs = ((yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage) or {}).get("outs", [])
    return next((o.get("md5") for o in outs if Path(o.get("path", "")) == path), None)


def _commit(stage: str) -> None:
    """``dvc commit --force STAGE`` through DVC's API (in this process, which has DVC loaded already)."""
    from dvc.repo import Repo

    from tasks.io import fsync_dir, fsync_file

    with Repo(".") as repo:
        repo.commit(stage, force=True)
    fsync_file("dvc.lock")                 # the champion's record on disk before the alias moves
    fsync_dir(".")
