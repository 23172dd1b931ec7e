"""Promotion: a flow step after the DVC stages (not a stage: it would make the pipeline a cycle).

The gate (``tasks/promotion_gate.py``) reads ``reports/eval/metrics.json``. When it passes:

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

A promotion always completes. Before anything moves, a pending-promotion record
(``.dvc/tmp/rft-promotion.json``: the version, the gate's reason, the cycle's
run, the champion metadata to install) is written, fsynced; the cycle deletes it
once its run has ended. A process killed anywhere in between leaves the record,
and the next ``rft cycle`` or ``rft stage`` (under the project lock, before it
reads the champion) finishes it: the steps are idempotent, so it runs them all
again, ends the cycle's run (``KILLED``, ``rft.status`` ``recovered``) and says
so. If the swap had not happened and ``models/candidate`` is no longer the
candidate the gate passed, it rolls back instead: nothing moved, the version is
tagged ``rft.promotion_abandoned``. Inside ``dvc repro`` a pending record stops
the stage (finishing it needs DVC's lock, which ``dvc repro`` holds).

The gate decides only this cycle's candidate (``not_this_cycles``): never one from
``dvc exp run``, and not again one an earlier cycle decided when this cycle
evaluated nothing; a no-op cycle says "nothing to decide".
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from tasks import iterations, tracking
from tasks.config import Params, gate_training_judge
from tasks.errors import RFTError
from tasks.faults import kill_point
from tasks.io import dvc_md5, fsync_dir, fsync_file, recover, write_json
from tasks.lock import lock_file
from tasks.paths import CANDIDATE, DVC_LOCK, REWARD
from tasks.paths import EVAL_METRICS as METRICS
from tasks.policy import install_policy, read_meta
from tasks.promotion_gate import Decision, decide
from tasks.provenance import split_change
from tasks.reward_model import meta as reward_meta


def promote(params: Params, evaluated: bool = True, parent_run: str | None = None,
            iteration: int | None = None) -> dict:
    """Run the gate on the candidate and promote it if it passes. ``evaluated``: this cycle ran the evaluate
    stage (else a candidate an earlier cycle decided is not decided again: ``not_this_cycles``).
    ``parent_run`` and ``iteration``: the cycle's MLflow run and number, which the flow passes (None outside a
    cycle: with no cycle run to end, the promotion completes here)."""
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
    decision = decide(metrics, params.promote, gate_training_judge(params), suites=list(params.evaluate.regression))
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
    rm_version = reward_meta(REWARD).get("registry_version") if REWARD.exists() else None
    record = {"policy_version": str(version), "reason": decision.summary, "champion_dir": str(champion),
              "candidate_md5": dvc_md5(CANDIDATE),
              "reward_model_version": None if rm_version is None else str(rm_version),
              "run_id": parent_run,
              "iteration": None if iteration is None else str(iteration),
              "meta": {**cand, "base_md5": read_meta(champion).get("base_md5"),
                       "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
              "publish": {"dvc_push": params.promote.dvc_push, "git_commit": params.promote.git_commit},
              "pid": os.getpid(), "started": time.time()}
    write_pending(record)                       # before anything moves: the next writer finishes it
    kill_point("promote:recorded")
    result.update(finish(record, params, client))
    if record["run_id"] is None:                # no cycle run to end: the promotion is complete here
        clear_pending()
    return result


# Promotion's steps, in order; a kill point follows each (tasks/faults.py). Every step is idempotent, so finishing
# a record runs them all again from the first, and a kill during a recovery leaves a record a later one finishes.
STEPS = ("swapped", "committed", "aliased", "tagged", "published")


def pending_file(root: str | Path = ".") -> Path:
    """The pending-promotion record: beside the project lock (``tasks/lock.py``), under DVC's scratch folder."""

    return lock_file(root).with_name("rft-promotion.json")


def write_pending(record: dict) -> None:
    path = pending_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)                    # atomic and fsynced: a power cut leaves it whole or absent


def read_pending() -> dict | None:
    path = pending_file()
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RFTError(f"{path}: the record of an interrupted promotion is unreadable ({exc}). Check that "
                       f"models/champion, dvc.lock and policy@champion agree, then delete {path}") from exc
    return record if isinstance(record, dict) else None


def clear_pending() -> None:
    path = pending_file()
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


def finish(record: dict, params: Params, client) -> dict:
    """Carry promotion ``record`` through every step: the champion folder swap, its ``dvc commit``, the
    ``champion`` aliases, the tags on the version and on the cycle's run, then the push and the iteration's commit
    (``promote.dvc_push``, ``promote.git_commit``). Each step is skipped where it is done already."""

    version, reason, run_id = record["policy_version"], record["reason"], record.get("run_id")
    champion = Path(record["champion_dir"])
    if not installed(champion, record):
        install_policy(CANDIDATE, champion, record["meta"])
    kill_point("promote:swapped")
    _commit("champion")
    if run_id:
        client.set_tag(run_id, iterations.CHAMPION_MD5_TAG, dvc_md5(champion))
    kill_point("promote:committed")
    client.set_registered_model_alias("policy", "champion", version)
    if record.get("reward_model_version") is not None:
        client.set_registered_model_alias("reward-model", "champion", record["reward_model_version"])
    kill_point("promote:aliased")
    client.set_model_version_tag("policy", version, "promotion_reason", reason)
    if run_id:
        for key, value in {"rft.champion_version": version, "rft.promoted": "true",
                           "rft.promotion_reason": reason[:5000]}.items():
            client.set_tag(run_id, key, value)
        if "promoted" not in client.get_run(run_id).data.metrics:
            client.log_metric(run_id, "promoted", 1.0)
    kill_point("promote:tagged")
    out: dict = {"reward_model_version": record.get("reward_model_version")}
    if run_id:                                  # the iteration's record: dvc.lock (and the pushed outputs)
        # As the promoting cycle's params said, whatever params.yaml says by the time a recovery runs.
        publish = SimpleNamespace(**record.get("publish", {"dvc_push": params.promote.dvc_push,
                                                           "git_commit": params.promote.git_commit}))
        done = iterations.publish(publish, f"rft iteration {record.get('iteration') or '?'}: promote "
                                           f"policy v{version}")
        if "commit" in done:
            client.set_tag(run_id, "rft.promotion_commit", done["commit"])
            out["commit"] = done["commit"]
    kill_point("promote:published")
    return {k: v for k, v in out.items() if v is not None}


def installed(champion: Path, record: dict) -> bool:
    """Whether the swap of ``record`` is done: the champion folder's metadata is the one the record installs."""
    meta = read_meta(champion) if champion.exists() else {}
    return all(meta.get(k) == record["meta"].get(k) for k in ("registry_version", "promoted_at"))


def recover_promotion(params: Params, who: str = "rft") -> str | None:
    """Finish a promotion that a killed process left half done (its record in ``pending_file()``): or, when the
    candidate it names is gone and the swap had not happened, roll it back (nothing moved). End the cycle's run
    where it is still open. Returns what it did (None: nothing was pending). Called under the project lock by
    every cycle and ``rft stage`` before they read the champion."""
    record = read_pending()
    if record is None:
        return None
    if os.environ.get("DVC_STAGE"):                # set by DVC for the stage it runs
        # Inside dvc repro, whose lock a dvc commit would need: finishing here would deadlock, and going on would
        # record a champion folder whose alias never moved.
        raise RFTError(f"{pending_file()}: a promotion (policy v{record.get('policy_version')}) was interrupted "
                       "and is not finished. Run `rft cycle` (or `rft stage champion`) outside dvc repro first: "
                       "it finishes the promotion; then run dvc repro again")
    from mlflow import MlflowClient

    tracking.setup(params.tracking)
    client = MlflowClient()
    version, run_id = record["policy_version"], record.get("run_id")
    champion = Path(record["champion_dir"])
    recover(champion)                           # a folder swap the kill cut short: whole again, old or new
    if installed(champion, record) or (CANDIDATE.exists() and dvc_md5(CANDIDATE) == record["candidate_md5"]):
        try:
            finish(record, params, client)
        except RFTError as exc:
            raise RFTError(f"{pending_file()}: finishing the interrupted promotion of policy v{version} failed: "
                           f"{exc}. Fix what it says and run the command again: the record stays until the "
                           "promotion is complete") from None
        status, what = "recovered", (f"{who}: finished the promotion of policy v{version} that a killed process "
                                     f"left half done (iteration {record.get('iteration') or '?'}): {champion}, "
                                     "dvc.lock, policy@champion and the version's tags agree")
    else:
        why = (f"{CANDIDATE} is no longer the candidate the gate passed (md5 {record['candidate_md5']}) and "
               f"{champion} was not swapped yet")
        client.set_model_version_tag("policy", version, "rft.promotion_abandoned", why)
        if run_id:
            client.set_tag(run_id, "rft.promoted", "false")
            client.set_tag(run_id, "rft.error", f"promotion interrupted and rolled back: {why}")
        status, what = "failed", (f"{who}: rolled back the interrupted promotion of policy v{version}: {why}; "
                                  "the champion stays as it was")
    if run_id:
        run = client.get_run(run_id)
        if run.info.status == "RUNNING":        # its process is gone: the run ends here, saying how
            client.set_tag(run_id, "rft.status", status)
            client.set_tag(run_id, "rft.recovered", what[:5000])
            client.set_terminated(run_id, "KILLED")
    clear_pending()
    print(what, flush=True)
    return what


GATE_TAG = "rft.gate"      # on a decided version: the hash of the promote section that decided it


def gate_hash(params: Params) -> str:
    """The md5 of the ``promote`` section: a decision holds for the gate that made it."""
    import dataclasses
    import hashlib

    blob = json.dumps(dataclasses.asdict(params.promote), sort_keys=True, default=str)
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

    lock = DVC_LOCK
    if not lock.exists():
        return None
    outs = ((yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage) or {}).get("outs", [])
    return next((o.get("md5") for o in outs if Path(o.get("path", "")) == path), None)


def _commit(stage: str) -> None:
    """``dvc commit --force STAGE`` through DVC's API (in this process, which has DVC loaded already)."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        repo.commit(stage, force=True)
    fsync_file(DVC_LOCK)                 # the champion's record on disk before the alias moves
    fsync_dir(".")
