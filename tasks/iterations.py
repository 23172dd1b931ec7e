"""Iterations: numbered cycles whose MLflow run, model versions, DVC hashes and git commit point to each other.

Every cycle the flow runs is an *iteration* with a number (one more than the
highest in the experiment). Its MLflow parent run is tagged with

- ``rft.iteration``, ``rft.parent_version`` (the champion it started from) and
  ``rft.policy_version`` (the candidate it registered);
- ``dvc.md5.<path>`` for every output and data input in ``dvc.lock``;
- ``git.commit`` (the commit it started from) and, when ``promote.git_commit``
  is on, ``rft.commit`` (the commit recording its ``dvc.lock``: check it out,
  ``dvc pull`` and ``dvc repro`` to reproduce the iteration) and
  ``rft.promotion_commit``.

The registered versions carry ``rft.iteration`` and ``rft.cycle_run_id`` back.
``rft history`` reads all this back as a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import yaml

from tasks import provenance, tracking
from tasks.errors import RFTError
from tasks.io import read_jsonl
from tasks.manifest import git_tracked_outputs, load_params
from tasks.paths import CANDIDATE, DVC_LOCK, EVAL_METRICS, PROMPTS, REWARD
from tasks.policy import read_meta
from tasks.retry import backoff_delay
from tasks.reward_model import meta as reward_meta

KIND_TAG, ITERATION_TAG = "rft.kind", "rft.iteration"
# On a cycle run that promoted: the DVC hash of the champion folder it installed (rft gc keeps its cache files, so
# the champion stays reproducible from the iteration's commit after later ones supersede it).
CHAMPION_MD5_TAG = "rft.champion_md5"
RETRIES, BACKOFF = 3, 1.0


def cycle_runs(client, experiment_id: str) -> list:
    """The experiment's cycle parent runs, newest first."""
    return client.search_runs([experiment_id], f"tags.`{KIND_TAG}` = 'cycle'", order_by=["attributes.start_time DESC"],
                              max_results=5000)


def next_iteration(client, experiment_id: str) -> int:
    numbers = [int(r.data.tags[ITERATION_TAG]) for r in cycle_runs(client, experiment_id)
               if r.data.tags.get(ITERATION_TAG, "").isdigit()]
    return max(numbers, default=0) + 1


def champion_version(client, name: str = "policy") -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, "champion").version)
    except MlflowException:
        return None


PARAMS_MD5_TAG, PARAMS_CHANGED_TAG = "rft.params_md5", "rft.params_changed"


def params_md5(path: str | Path) -> str | None:
    """The md5 of the params file's bytes (None when it cannot be read)."""
    import hashlib

    try:
        return hashlib.md5(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def params_drift(path: str | Path, loaded: str | None, rows: list[dict]) -> str | None:
    """Why the params of this cycle are not one file (None: they are): ``path`` changed since the cycle loaded it
    (md5 ``loaded``), or a stage (``rows`` carry the ``params_md5`` each stage read) read another version."""
    now = params_md5(path)
    others = [r["stage"] for r in rows if r.get("params_md5") not in (None, loaded)]
    if now == loaded and not others:
        return None
    read = f"; the stages {', '.join(others)} read a changed file" if others else ""
    return (f"{path} changed during the cycle (md5 {loaded} when it started, {now} now){read}. The iteration's "
            f"commit records the file as it is now; the params the cycle started with are the parent run's "
            f"params.yaml artifact and its {PARAMS_MD5_TAG} tag")


def params_values_changed(path: str | Path, started) -> bool:
    """Whether ``path`` now holds other values than ``started`` (the Params the cycle loaded): more than a comment
    or the layout changed. A file that no longer loads counts as changed."""

    try:
        return load_params(path) != started
    except RFTError:
        return True


def data_hashes(lock: str | Path = DVC_LOCK) -> dict[str, str]:
    """``path -> md5`` for every stage output, and every data input, recorded in ``dvc.lock``."""
    lock = Path(lock)
    if not lock.exists():
        return {}
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    hashes: dict[str, str] = {}
    for entry in stages.values():
        for out in entry.get("outs", []):
            hashes[out["path"]] = out.get("md5", "")
        for dep in entry.get("deps", []):
            if dep["path"].startswith("data/") and dep["path"] not in hashes:
                hashes[dep["path"]] = dep.get("md5", "")
    return hashes


def _with_retries(what: str, fn):
    """Run an I/O step (a DVC remote, git) up to ``RETRIES`` times with doubling backoff."""
    for attempt in range(RETRIES):
        proc = fn()
        if proc.returncode == 0:
            return proc
        if attempt + 1 < RETRIES:
            time.sleep(backoff_delay(BACKOFF, attempt))
    raise RFTError(f"{what} failed after {RETRIES} tries: {(proc.stderr or proc.stdout).strip()[-800:]}")


def dvc_push() -> None:
    """``dvc push`` of the workspace's outputs, through DVC's API in this process (the flow has DVC loaded
    already: a ``dvc`` subprocess paid 1–2 s of interpreter and imports each time), retried like the CLI was."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    def push():
        try:
            with Repo(".") as repo:
                repo.push()
        except DvcException as exc:
            return subprocess.CompletedProcess(["dvc", "push"], 1, "", str(exc))
        return subprocess.CompletedProcess(["dvc", "push"], 0, "", "")

    _with_retries("dvc push", push)


def git_commit(message: str, paths=None) -> str | None:
    """Commit ``paths`` (by default ``dvc.lock``, ``params.yaml`` and what DVC leaves to git) when they changed;
    return the commit now at HEAD, or None outside a git repository."""

    paths = paths or [str(DVC_LOCK), "params.yaml", *git_tracked_outputs()]
    repo = subprocess.run(["git", "rev-parse", "--git-dir"], capture_output=True, text=True)
    if repo.returncode != 0:
        if Path(".git").exists():
            # A repository git will not work in (damaged, or owned by another user: safe.directory): saying nothing
            # would leave the iteration without its commit.
            raise RFTError(f"promote.git_commit: git refuses the repository here: {_git_says(repo)}")
        return None
    env = dict(os.environ)                     # git's own settings (HOME, GIT_*), plus a committer when none is set
    if not subprocess.run(["git", "config", "user.email"], capture_output=True, text=True).stdout.strip():
        # A scheduled worker often has no git identity: commit as the pipeline rather than fail.
        env.update(GIT_AUTHOR_NAME="rft", GIT_AUTHOR_EMAIL="rft@localhost",
                   GIT_COMMITTER_NAME="rft", GIT_COMMITTER_EMAIL="rft@localhost")
    present = [p for p in paths if Path(p).exists()]
    added = subprocess.run(["git", "add", "--", *present], capture_output=True, text=True)
    if added.returncode != 0:
        raise RFTError(f"promote.git_commit: git add {' '.join(present)} failed: {_git_says(added)}")
    staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *present]).returncode != 0
    if staged:
        _with_retries("git commit", lambda: subprocess.run(["git", "commit", "-q", "-m", message, "--", *present],
                                                           capture_output=True, text=True, env=env))
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return head.stdout.strip() if head.returncode == 0 else None


def _git_says(proc) -> str:
    return ((proc.stderr or proc.stdout or "").strip() or f"exit status {proc.returncode}")[-800:]


def publish(promote_cfg, message: str) -> dict[str, str]:
    """Push the DVC outputs and commit the record, as ``promote.dvc_push`` and ``promote.git_commit`` say."""
    done: dict[str, str] = {}
    if promote_cfg.dvc_push:
        dvc_push()
        done["dvc_push"] = "ok"
    if promote_cfg.git_commit:
        sha = git_commit(message)
        if sha:
            done["commit"] = sha
    return done


def tag_versions(client, iteration: int, run_id: str, versions: dict[str, str | int | None]) -> None:
    """Point each registered version (``{model name: version}``) back at its iteration."""
    for name, version in versions.items():
        if version is None:
            continue
        client.set_model_version_tag(name, str(version), ITERATION_TAG, str(iteration))
        client.set_model_version_tag(name, str(version), "rft.cycle_run_id", run_id)


# What `rft history` shows of each iteration.
COLUMNS = ("iteration", "started", "status", "version", "parent", "winrate", "ci_low", "kl", "promoted",
           "reason", "commit", "data")


def history(client, experiment_id: str, *, data_paths=("data/prompts.jsonl", "data/labels.jsonl")) -> list[dict]:
    """One row per iteration, oldest first."""
    from datetime import datetime, timezone

    rows = []
    for run in reversed(cycle_runs(client, experiment_id)):
        tags, metrics = run.data.tags, run.data.metrics
        source = tags.get("rft.winrate_source", "")
        status = tags.get("rft.status") or ("running" if run.info.status == "RUNNING" else run.info.status.lower())
        promoted = tags.get("rft.promoted")
        rows.append({
            "iteration": int(tags[ITERATION_TAG]) if tags.get(ITERATION_TAG, "").isdigit() else None,
            "started": datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "status": status,
            "version": tags.get("rft.policy_version"),
            "parent": tags.get("rft.parent_version"),
            "winrate": metrics.get(f"winrate_{source}") if source else None,
            "ci_low": metrics.get(f"winrate_{source}_ci_low") if source else None,
            "kl": metrics.get("kl"),
            "promoted": {"true": "yes", "false": "no"}.get(promoted, "-"),
            "reason": tags.get("rft.promotion_reason") or tags.get("rft.error", ""),
            "commit": tags.get("rft.commit") or tags.get("git.commit", ""),
            "data": {p: tags.get(f"dvc.md5.{p}", "") for p in data_paths},
            # Which prompts the gate read as held out (tasks/provenance.py); empty before the record existed.
            "split": {k.removeprefix("rft.split."): v for k, v in tags.items() if k.startswith("rft.split.")},
            "run_id": run.info.run_id,
        })
    return rows


def format_history(rows: list[dict]) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(title="iterations")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for r in rows:
        num = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        data = " ".join(f"{Path(p).stem}:{h[:8]}" for p, h in r["data"].items() if h)
        if r["split"].get("heldout_sha"):
            data += f" heldout:{r['split']['heldout_prompts']}@{r['split']['heldout_sha'][:8]}"
        table.add_row(str(r["iteration"] or "-"), r["started"], r["status"], r["version"] or "-", r["parent"] or "-",
                      num(r["winrate"]), num(r["ci_low"]), num(r["kl"]), r["promoted"], r["reason"][:90],
                      (r["commit"] or "")[:10], data)
    buf = io.StringIO()
    Console(file=buf, width=200).print(table)
    return buf.getvalue()


def record_iteration(params, iteration: int, client, run_id: str, rows: list[dict]) -> None:
    """After the stages: the evaluation's figures on the parent run, the lineage tags both ways, then the
    iteration's outputs pushed and its dvc.lock committed (as params say) before promotion moves anything."""
    import mlflow

    evaluation = next((r["metrics"] for r in rows if r["stage"] == "evaluate" and r["metrics"]), None)
    if evaluation is None:          # evaluate was up to date: its figures are in its report

        evaluation = json.loads(EVAL_METRICS.read_text()) if EVAL_METRICS.exists() else {}
    mlflow.log_metrics({k: float(v) for k, v in evaluation.items() if isinstance(v, (int, float))})
    trained = next((r["metrics"] for r in rows if r["stage"] == "train_reward" and r["metrics"]), {})
    mlflow.log_metrics({f"reward_model.{k}": float(v) for k, v in trained.items()
                        if isinstance(v, (int, float)) and ("acc" in k or "loss" in k)})
    hashes = data_hashes()
    mlflow.set_tags({f"dvc.md5.{path}": md5 for path, md5 in hashes.items()})
    if PROMPTS.exists():            # which prompts this iteration's gate read as held out (tasks/provenance.py)
        record = provenance.split_record(read_jsonl(PROMPTS), params.prepare.salt, params.prepare.heldout_fraction)
        mlflow.log_dict(record, provenance.HELDOUT_ARTIFACT)
        mlflow.set_tags(provenance.split_tags(record))
    tracking.log_datasets(hashes, DATASETS)
    versions = {"policy": read_meta(CANDIDATE).get("registry_version") if CANDIDATE.exists() else None}
    if REWARD.exists():
        versions["reward-model"] = reward_meta(REWARD).get("registry_version")
    champion = read_meta(params.policy.champion_dir) if Path(params.policy.champion_dir).exists() else {}
    mlflow.set_tags({"rft.parent_version": str(champion.get("registry_version", "none")),
                     "rft.policy_version": str(versions["policy"]),
                     "rft.reward_model_version": str(versions.get("reward-model"))})
    tag_versions(client, iteration, run_id, versions)
    done = publish(params.promote, f"rft iteration {iteration}: outputs of cycle run {run_id}")
    if "commit" in done:
        mlflow.set_tag("rft.commit", done["commit"])


# The cycle's datasets on its MLflow parent run (``mlflow.log_input``), by context, with their DVC hashes.
DATASETS = {"data/prompts.jsonl": "prompts (train and held-out)", "data/labels.jsonl": "labels",
            "data/generations.jsonl": "generations", "data/eval.jsonl": "held-out evaluation"}
