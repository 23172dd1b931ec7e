"""``rft gc``: free the DVC cache and the MLflow artifacts of old, rejected candidates.

What is kept, always:

- every iteration among the last ``gc.keep_last`` (by number), every iteration that
  promoted its candidate, and every iteration whose run has not ended;
- every registered version that holds an alias (``@champion``, ``@challenger``…),
  that was ever promoted (a ``promotion_reason`` tag) or that some iteration started
  from (its ``rft.parent_version``): champions, past and present;
- every object that the workspace's ``dvc.lock`` or ``*.dvc`` files name.

What goes, for the other iterations:

- their policy and reward-model versions, unless kept above: the version's files in
  the MLflow artifact store and the registry entry. The stage's run, its metrics and
  the iteration's parent run stay (``rft history`` still lists it); the run is tagged
  ``rft.gc`` with the date;
- the DVC cache objects their ``dvc.md5.<path>`` tags name (a folder's ``.dir``
  manifest and the files it lists), unless a kept iteration or the workspace names
  the same object.

Nothing that no iteration names is touched (data you ``dvc add``-ed, ``dvc exp run``
results, other experiments), nor the DVC remote: a dropped iteration's commit can
still be checked out and ``dvc pull``-ed from the remote. So a cache file goes only
when the DVC remote holds it: with no remote, a push that failed or
``promote.dvc_push: false``, the cache is the only copy, and gc keeps it and says how
many it kept (``dvc push``, then ``rft gc`` again). The champion folder each promotion
installed (its hash is tagged ``rft.champion_md5`` on the cycle's run) is kept like
the workspace's. ``--dry-run`` prints the plan, with the size of each version's
artifacts wherever the MLflow artifact store is, and changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from tasks import tracking
from tasks.iterations import CHAMPION_MD5_TAG, ITERATION_TAG, cycle_runs
from tasks.paths import DVC_LOCK
from tasks.redact import redact_text

MODELS = {"policy": "rft.policy_version", "reward-model": "rft.reward_model_version"}
MD5_TAG = "dvc.md5."
GC_TAG = "rft.gc"


@dataclass
class Plan:
    kept: list[int] = field(default_factory=list)                 # iterations kept
    dropped: list[int] = field(default_factory=list)              # iterations whose files go
    versions: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # (name, version, source, run)
    objects: list[Path] = field(default_factory=list)             # DVC cache files to delete
    object_bytes: int = 0
    artifact_bytes: int = 0
    unsized: int = 0                                               # versions whose artifact store could not be listed
    unpushed: list[Path] = field(default_factory=list)            # cache files kept: the DVC remote lacks them
    remote: str | None = None                                      # the DVC remote checked (None: none set)
    remote_error: str | None = None                                # why it could not be checked


def iteration_of(run) -> int | None:
    value = run.data.tags.get(ITERATION_TAG, "")
    return int(value) if value.isdigit() else None


def choose_iterations(runs, keep_last: int) -> tuple[list, list]:
    """Split the cycle runs into (kept, dropped): the last ``keep_last`` iteration numbers, promoted
    iterations and runs that have not ended are kept."""
    numbered = sorted((r for r in runs if iteration_of(r) is not None), key=iteration_of)
    recent = {iteration_of(r) for r in numbered[-keep_last:]} if keep_last else set()
    kept, dropped = [], []
    for run in numbered:
        keep = (iteration_of(run) in recent or run.data.tags.get("rft.promoted") == "true"
                or run.info.status in ("RUNNING", "SCHEDULED"))
        (kept if keep else dropped).append(run)
    return kept, dropped


def protected_versions(client, runs, kept) -> dict[str, set[str]]:
    """``{model name: versions}`` that must stay: alias holders, ever promoted, some iteration's parent, or
    named by a kept iteration."""
    keep: dict[str, set[str]] = {name: set() for name in MODELS}
    from mlflow.exceptions import MlflowException

    for name in MODELS:
        try:
            aliases = client.get_registered_model(name).aliases or {}
        except MlflowException:      # no such registered model yet
            continue
        keep[name] |= {str(v) for v in aliases.values()}
        for mv in client.search_model_versions(f"name='{name}'"):
            if "promotion_reason" in (mv.tags or {}):
                keep[name].add(str(mv.version))
    for run in runs:
        parent = run.data.tags.get("rft.parent_version")
        if parent:
            keep["policy"].add(parent)
    for run in kept:
        for name, tag in MODELS.items():
            if run.data.tags.get(tag):
                keep[name].add(run.data.tags[tag])
    return keep


def workspace_hashes(root: Path) -> set[str]:
    """Every md5 that the workspace's ``dvc.lock`` and ``*.dvc`` files name."""
    hashes: set[str] = set()
    lock = root / DVC_LOCK
    if lock.exists():
        for entry in ((yaml.safe_load(lock.read_text()) or {}).get("stages") or {}).values():
            for item in (entry.get("outs") or []) + (entry.get("deps") or []):
                if item.get("md5"):
                    hashes.add(item["md5"])
    for dvcfile in _dvc_files(root):
        try:
            outs = (yaml.safe_load(dvcfile.read_text()) or {}).get("outs") or []
        except yaml.YAMLError:
            continue
        hashes.update(o["md5"] for o in outs if isinstance(o, dict) and o.get("md5"))
    return hashes


def _dvc_files(root: Path):
    """The ``*.dvc`` files under ``root``, not looking inside hidden folders (``.git``, ``.dvc``, ``.venv``)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from (Path(folder) / f for f in files if f.endswith(".dvc"))


def object_path(cache: Path, md5: str) -> Path:
    return cache / md5[:2] / md5[2:]


def cache_files(cache: Path, md5: str) -> set[Path]:
    """The cache files of one output: the object itself and, for a folder (``.dir``), every file it lists."""
    path = object_path(cache, md5)
    if not path.exists():
        return set()
    files = {path}
    if md5.endswith(".dir"):
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            entries = []
        files |= {object_path(cache, e["md5"]) for e in entries if isinstance(e, dict) and e.get("md5")}
    return {f for f in files if f.exists()}


def run_hashes(run) -> set[str]:
    return {v for k, v in run.data.tags.items() if k.startswith(MD5_TAG) and v}


def plan(client, experiment_id: str, keep_last: int, cache: Path, root: Path = Path(".")) -> Plan:
    from mlflow.exceptions import MlflowException

    runs = cycle_runs(client, experiment_id)
    kept, dropped = choose_iterations(runs, keep_last)
    out = Plan(kept=[iteration_of(r) for r in kept], dropped=[iteration_of(r) for r in dropped])
    keep_versions = protected_versions(client, runs, kept)
    seen = set()
    for run in dropped:
        for name, tag in MODELS.items():
            version = run.data.tags.get(tag)
            if not version or not version.isdigit() or version in keep_versions[name] or (name, version) in seen:
                continue
            seen.add((name, version))
            try:
                mv = client.get_model_version(name, version)
            except MlflowException:      # already deleted: by an earlier gc, or by hand
                continue
            # Where the version's files lie: its logged model's artifacts (the source is a models:/ URI).
            where = client.get_model_version_download_uri(name, version)
            out.versions.append((name, version, where, mv.run_id))
            size = artifact_bytes(where)
            if size is None:
                out.unsized += 1
            else:
                out.artifact_bytes += size
    keep_files: set[Path] = set()
    installed = {r.data.tags[CHAMPION_MD5_TAG] for r in runs if r.data.tags.get(CHAMPION_MD5_TAG)}
    for md5 in workspace_hashes(root) | installed | {h for r in kept for h in run_hashes(r)}:
        keep_files |= cache_files(cache, md5)
    drop_files: set[Path] = set()
    for run in dropped:
        for md5 in run_hashes(run):
            drop_files |= cache_files(cache, md5)
    candidates = sorted(drop_files - keep_files)
    on_remote, out.remote, out.remote_error = remote_holds(root, {oid_of(f) for f in candidates})
    out.objects = [f for f in candidates if oid_of(f) in on_remote]
    out.unpushed = [f for f in candidates if oid_of(f) not in on_remote]
    out.object_bytes = sum(f.stat().st_size for f in out.objects)
    return out


def oid_of(path: Path) -> str:
    """The DVC object id of a cache file: its folder's two hex digits and its name (``ab/cdef...[.dir]``)."""
    return path.parent.name + path.name


def remote_holds(root: Path, oids: set[str]) -> tuple[set[str], str | None, str | None]:
    """Which of ``oids`` the project's default DVC remote holds: (held, the remote's name or None when there is
    none, why it could not be checked or None). A remote that cannot be checked holds nothing, as far as gc
    knows."""
    from dvc.config import NoRemoteError
    from dvc.repo import Repo

    if not oids:
        return set(), None, None
    with Repo(str(root)) as repo:
        name = repo.config["core"].get("remote") or "the default remote"
        try:
            odb = repo.cloud.get_remote_odb(None, "gc")
        except NoRemoteError:
            return set(), None, None
        except Exception as exc:  # noqa: BLE001 - a remote gc cannot list (cloud-versioned, bad config): keep all
            return set(), name, f"{type(exc).__name__}: {exc}"[:300]
        try:
            return set(odb.oids_exist(oids)), name, None
        except Exception as exc:  # noqa: BLE001 - any failure to list the remote means: keep everything

            return set(), name, redact_text(f"{type(exc).__name__}: {exc}")[:300]


def local_path(uri: str) -> Path | None:
    """The folder behind a ``file:`` URI or a plain path; None for a remote store."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def artifact_bytes(uri: str) -> int | None:
    """The bytes under an MLflow artifact location: summed on disk for a local store, else from the artifact
    repository's listing (a tracking server's mlflow-artifacts:, s3:, gs: ...); None when it cannot be listed (no
    credentials here, a server that does not serve artifacts): the size is unknown, and gc goes on."""
    path = local_path(uri)
    if path is not None:
        return folder_bytes(path)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    def walk(repo, sub: str | None) -> int:
        return sum(walk(repo, f.path) if f.is_dir else (f.file_size or 0) for f in repo.list_artifacts(sub))

    try:
        return walk(get_artifact_repository(uri), None)
    except Exception:  # noqa: BLE001 - any failure to list only leaves the size unknown
        return None


def folder_bytes(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def apply(client, p: Plan) -> None:
    """Delete what the plan names: versions' artifacts and registry entries first, then cache files."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    deleted: dict[str, list[str]] = {}
    for name, version, source, run_id in p.versions:
        path = local_path(source)
        if path is None or path.exists():
            get_artifact_repository(source).delete_artifacts()
        client.delete_model_version(name, version)
        if run_id:
            deleted.setdefault(run_id, []).append(f"{name} v{version}")
    for run_id, names in deleted.items():
        client.set_tag(run_id, GC_TAG, f"{stamp}: {', '.join(names)} deleted")
    for path in p.objects:
        try:
            os.chmod(path, 0o644)     # DVC leaves cache files read-only
            path.unlink()
        except FileNotFoundError:
            pass
    for parent in {path.parent for path in p.objects}:
        try:
            parent.rmdir()            # only when empty
        except OSError:
            pass


def describe(p: Plan, *, dry_run: bool, keep_last: int) -> str:
    mb = lambda n: f"{n / 2 ** 20:.1f} MB"
    verb = "would delete" if dry_run else "deleted"
    lines = [f"gc: keeping iterations {_span(p.kept) or 'none'} (the last {keep_last}, the promoted, the unfinished); "
             f"dropping the files of {_span(p.dropped) or 'none'}"]
    if p.versions:
        names = ", ".join(f"{name} v{version}" for name, version, _, _ in p.versions)
        unknown = f", and {p.unsized} of unknown size (their store could not be listed)" if p.unsized else ""
        lines.append(f"  {verb} {len(p.versions)} registered version(s) and their MLflow artifacts "
                     f"({mb(p.artifact_bytes)}{unknown}): {names}")
    lines.append(f"  {verb} {len(p.objects)} DVC cache file(s) ({mb(p.object_bytes)})")
    if p.unpushed:
        size = mb(sum(f.stat().st_size for f in p.unpushed if f.exists()))
        why = (f"the DVC remote '{p.remote}' could not be checked ({p.remote_error})" if p.remote_error else
               f"the DVC remote '{p.remote}' does not hold them" if p.remote else "no DVC remote is set")
        lines.append(f"  kept {len(p.unpushed)} DVC cache file(s) ({size}) of dropped iterations: {why}, so the "
                     "cache is their only copy (dvc push, then rft gc again)")
    if dry_run:
        lines.append("  dry run: nothing changed (run `rft gc` to delete)")
    return "\n".join(lines)


def _span(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def collect(params, *, dry_run: bool, root: Path = Path(".")) -> Plan:
    """``rft gc``: plan, print and (unless ``dry_run``) apply."""
    import mlflow

    exp_id = tracking.setup(params.tracking)
    client = mlflow.MlflowClient()
    p = plan(client, exp_id, params.gc.keep_last, dvc_cache(root), root)
    if not dry_run:
        apply(client, p)
    print(describe(p, dry_run=dry_run, keep_last=params.gc.keep_last))
    return p


def dvc_cache(root: Path) -> Path:
    """The local DVC cache's object folder (``.dvc/cache/files/md5`` unless ``cache.dir`` moves it)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return Path(repo.cache.local.path)
