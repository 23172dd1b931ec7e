"""Which prompts each iteration held out and trained on, and the check that no prompt a lineage ever trained on
is held out.

The split itself is ``tasks/heldout.py`` (a salted hash of each prompt's text). Its records:

- the ``prepare`` stage's run logs ``split/heldout_prompts.json`` (the held-out prompts' digests, the salt and
  the fraction); the cycle's parent run carries the same artifact and the tags ``rft.split.salt``,
  ``rft.split.heldout_fraction``, ``rft.split.heldout_prompts`` (count) and ``rft.split.heldout_sha``
  (a digest of the sorted digests), so an iteration names the evidence its gate read;
- the ``optimize`` stage's run logs ``split/trained_prompts.json``: the digest of every prompt it could have
  trained on (the training split, and the prompt of every label and rating row it read).

``check`` (run by ``prepare`` before it writes, and by ``evaluate`` before it samples) reads every
``optimize`` run of the tracking store (all experiments share the registry's champion; ``dvc exp run`` runs
never become champions and are left out) and stops the stage, and so the cycle (exit 2), when a held-out prompt
is one of them, naming the prompts. A run from before the record existed is read from the DVC cache by its
input hashes; one that cannot be read stops the check too, since it would otherwise pass blind. Label and rating
rows whose prompt is held out never reach training: ``without_heldout`` drops them at the ``label`` stage,
counted.

A new split (another salt, a higher fraction, or a project upgraded from the old shuffled split) would hold out
prompts the lineage trained on. ``keep_trained`` (``rft keep-trained``) writes every such prompt's digest to
``data/incoming/keep_in_train.json`` (``tasks/paths.py::KEEP_IN_TRAIN``), an input of ``prepare`` that git
or DVC versions: those prompts stay in training whatever their hash, and the new split holds out only prompts
no iteration trained on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from tasks.errors import DataError, RFTError
from tasks.heldout import DIGEST_CHARS, leaked, prompt_digest
from tasks.io import read_jsonl, write_json
from tasks.prompting import label_prompt, prompt_key, prompt_of
from tasks.tracking import DVC_EXP_TAG

HELDOUT_ARTIFACT = "split/heldout_prompts.json"
TRAINED_ARTIFACT = "split/trained_prompts.json"
SHOWN = 10                 # leaked prompts named in the message


class HeldoutLeak(RFTError):
    """A held-out prompt was used for training by this lineage: the gate's evidence would not be held out."""


def row_prompt(row: dict, prompts: dict):
    """``label_prompt``, or None for a row whose ``prompt_id`` names no prompt of the cycle."""
    try:
        return label_prompt(row, prompts)
    except KeyError:
        return None


def heldout_keys(prompt_rows: list[dict]) -> set[str]:
    return {prompt_key(prompt_of(r)) for r in prompt_rows if r.get("split") == "heldout"}


def heldout_digests(prompt_rows: list[dict]) -> dict[str, str]:
    """``digest -> canonical text`` of the held-out prompts."""
    return {prompt_digest(k): k for k in heldout_keys(prompt_rows)}


def trained_digests(prompt_rows: list[dict], *row_lists: list[dict]) -> list[str]:
    """Sorted digests of the training split's prompts and of the prompts of the given label/rating rows."""
    prompts = {str(r["id"]): prompt_of(r) for r in prompt_rows}
    keys = {prompt_key(prompt_of(r)) for r in prompt_rows if r.get("split") == "train"}
    for rows in row_lists:
        keys |= {prompt_key(p) for p in (row_prompt(r, prompts) for r in rows) if p is not None}
    return sorted(prompt_digest(k) for k in keys)


def split_sha(digests) -> str:
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()[:16]


def split_record(prompt_rows: list[dict], salt: str, fraction: float) -> dict:
    held = sorted(heldout_digests(prompt_rows))
    return {"salt": salt, "heldout_fraction": fraction, "heldout_prompts": len(held), "sha": split_sha(held),
            "heldout": held}


def split_tags(record: dict) -> dict[str, str]:
    return {"rft.split.salt": record["salt"], "rft.split.heldout_fraction": str(record["heldout_fraction"]),
            "rft.split.heldout_prompts": str(record["heldout_prompts"]), "rft.split.heldout_sha": record["sha"]}


def without_heldout(rows, prompts: dict, held: set[str], counter: dict, key: str):
    """Pass on the rows whose prompt is not held out; count the others in ``counter[key]``.

    Dropped, not refused: a preference file is usually collected over a whole prompt pool, and keeping the
    held-out prompts out of training is what the evaluation needs; the count goes to MLflow."""
    counter.setdefault(key, 0)
    for row in rows:
        p = row_prompt(row, prompts)
        if p is not None and prompt_key(p) in held:
            counter[key] += 1
            continue
        yield row


TRAINED_INPUTS = ("data/prompts.jsonl", "data/labels.jsonl", "data/ratings.jsonl")


def trained_before(client) -> tuple[set[str], list[str]]:
    """(digests, runs that cannot be read) over every ``optimize`` run of the tracking store, in every
    experiment (the registry's champion is shared by all of them), except ``dvc exp run`` runs, whose candidates
    never become champions. A run from before the record existed is read from its inputs in the DVC cache by the
    hashes its ``dvc.md5.*`` tags carry; a run whose inputs are not there either is returned by id."""
    import tempfile

    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, "tags.`rft.stage` = 'optimize'", run_view_type=ViewType.ALL,
                              max_results=50000) if experiments else []
    out: set[str] = set()
    unread: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            if DVC_EXP_TAG in run.data.tags:
                continue
            if any(a.path == TRAINED_ARTIFACT for a in client.list_artifacts(run.info.run_id, "split")):
                path = client.download_artifacts(run.info.run_id, TRAINED_ARTIFACT, tmp)
                out |= set(json.loads(Path(path).read_text())["trained"])
                continue
            found = from_dvc_cache(run.data.tags)
            if found is None:
                unread.append(run.info.run_id)
            else:
                out |= found
    return out, unread


def from_dvc_cache(tags: dict) -> set[str] | None:
    """The trained digests of an ``optimize`` run without a record, from the files its ``dvc.md5.*`` tags name,
    read from this project's DVC cache; None when the prompts file is not there."""
    hashes = {p: tags[f"dvc.md5.{p}"] for p in TRAINED_INPUTS if f"dvc.md5.{p}" in tags}
    if TRAINED_INPUTS[0] not in hashes:
        return None

    try:
        from dvc.repo import Repo

        cache = Path(Repo(".").cache.local.path)
    except Exception:          # not a DVC project here: nothing to read from
        return None
    files = {p: cache / md5[:2] / md5[2:] for p, md5 in hashes.items()}
    if not files[TRAINED_INPUTS[0]].is_file():
        return None
    rows = {p: read_jsonl(f, allow_empty=True) if f.is_file() else [] for p, f in files.items()}
    return set(trained_digests(rows[TRAINED_INPUTS[0]], *(rows.get(p, []) for p in TRAINED_INPUTS[1:])))


def check(prompt_rows: list[dict], source: str, client) -> None:
    """Stop (HeldoutLeak, exit 2) if a held-out prompt of ``prompt_rows`` was trained on by an earlier
    ``optimize`` run, or if an earlier run's training prompts cannot be read (the check would be blind)."""
    trained, unread = trained_before(client)
    if unread:
        raise HeldoutLeak(
            f"{source}: {len(unread)} earlier optimize run(s) have no record of the prompts they trained on "
            f"(split/trained_prompts.json) and their inputs are not in this project's DVC cache: "
            f"{', '.join(unread[:SHOWN])}. Without them the held-out set cannot be checked: `dvc pull` the data "
            "those runs read (their dvc.md5.* tags name it), or delete those runs from the tracking store.")
    bad = leaked(heldout_digests(prompt_rows), trained)
    if bad:
        shown = "\n".join(f"  - {t[:120]!r}" for t in bad[:SHOWN])
        more = f"\n  ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        raise HeldoutLeak(
            f"{source}: {len(bad)} held-out prompt(s) were used for training by an earlier iteration, so "
            f"evaluating on them is not held-out evidence:\n{shown}{more}\n"
            "A changed prepare.salt or a raised prepare.heldout_fraction draws a new split that does this (so "
            "does a project's first cycle after the split became a hash): restore them, or run `rft keep-trained`, "
            "which keeps every prompt an earlier iteration trained on in training "
            "(data/incoming/keep_in_train.json).")


def read_keep(path: str | Path) -> set[str]:
    """The digests of a keep-in-train file (a JSON object ``{"digests": [...]}``; none when the file is absent);
    DataError naming the file and the entry when it is malformed."""

    f = Path(path)
    if not f.exists():
        return set()
    try:
        doc = json.loads(f.read_text())
    except ValueError as exc:
        raise DataError(f, "valid JSON", detail=str(exc)) from None
    except RecursionError:
        raise DataError(f, "valid JSON", detail="nested deeper than the JSON parser reads") from None
    digests = doc.get("digests") if isinstance(doc, dict) else None
    if not isinstance(digests, list):
        raise DataError(f, "a JSON object with a list 'digests'", detail=f"found {type(doc).__name__}")
    bad = [(i, repr(d)[:40]) for i, d in enumerate(digests, start=1)
           if not (isinstance(d, str) and len(d) == DIGEST_CHARS and all(c in "0123456789abcdef" for c in d))]
    if bad:
        raise DataError(f, f"each digest is {DIGEST_CHARS} lowercase hex digits (tasks/heldout.py prompt_digest)",
                        column="digests", rows=bad)
    return set(digests)


def keep_trained(path: str | Path, client) -> tuple[int, int]:
    """Add every prompt an earlier ``optimize`` run trained on to ``path`` (``tasks/paths.py::KEEP_IN_TRAIN``),
    written atomically; returns (digests in the file, digests added). Stops like ``check`` when a run cannot be
    read."""

    trained, unread = trained_before(client)
    if unread:
        raise HeldoutLeak(f"{len(unread)} earlier optimize run(s) have no record of the prompts they trained on "
                          f"and their inputs are not in this project's DVC cache: {', '.join(unread[:SHOWN])}; "
                          "`dvc pull` the data those runs read, then run this again")
    kept = read_keep(path)
    write_json(Path(path), {"digests": sorted(kept | trained)})
    return len(kept | trained), len(trained - kept)


def log_trained(digests: list[str]) -> None:
    import mlflow

    mlflow.log_dict({"trained": digests}, TRAINED_ARTIFACT)


def say_dropped(counter: dict) -> None:
    dropped = {k: v for k, v in counter.items() if v}
    if dropped:
        print("label: dropped rows whose prompt is held out (they never train): "
              + ", ".join(f"{v} {k.removeprefix('dropped_heldout_')}" for k, v in dropped.items()),
              file=sys.stderr, flush=True)


def split_change(client, salt: str, fraction: float) -> str | None:
    """A sentence for the gate's reason when this cycle's split differs from the one the champion's iteration
    used (its cycle run's ``rft.split.*`` tags); None when it is the same or the champion has no record."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias("policy", "champion")
        run_id = version.tags.get("rft.cycle_run_id")
        tags = client.get_run(run_id).data.tags if run_id else {}
    except MlflowException:
        return None
    if "rft.split.salt" not in tags:
        return None
    changes = []
    if tags["rft.split.salt"] != salt:
        changes.append(f"prepare.salt {tags['rft.split.salt']!r} -> {salt!r}")
    if float(tags["rft.split.heldout_fraction"]) != fraction:
        changes.append(f"prepare.heldout_fraction {tags['rft.split.heldout_fraction']} -> {fraction}")
    if not changes:
        return None
    return (f"a new held-out split since the champion's iteration ({', '.join(changes)}): its held-out figures "
            "came from other prompts")
