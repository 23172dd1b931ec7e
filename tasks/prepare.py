"""Stage ``prepare``: split raw prompts into ``train`` and ``heldout`` with no prompt in both.

A raw row has an ``id`` and either ``prompt`` (text) or ``messages`` (a chat
conversation: a list of ``{role, content}``, ending with the user's turn). A
prompt's side is a salted hash of its normalised text (``tasks/heldout.py``,
``tasks/prompting.py::prompt_key``), not of its row or its place in the file, so
two rows with the same prompt (after case and whitespace folding) always land on
the same side, and a prompt keeps its side as others are added or removed.
Held-out prompts are also never the prompt of a bootstrap demonstration, and,
before anything is written, never a prompt an earlier ``optimize`` run trained on
(``tasks/provenance.py``), so evaluation runs on prompts the policy has not been
trained on. The checks of the conversation's shape are the validate stage's.

Ids take one canonical form (``check_ids``): strings, or integers written as decimal strings. The same
prompt text under two ids is accepted, lands on one side of the split, and is counted (``repeated_texts``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.config import Params
from tasks.errors import DataError
from tasks.heldout import is_heldout, prompt_digest
from tasks.io import file_md5, read_jsonl, write_jsonl
from tasks.paths import CORPUS, KEEP_IN_TRAIN
from tasks.paths import PROMPTS as OUT
from tasks.prompting import prompt_key, prompt_of

DEMOS = CORPUS / "demos.jsonl"


def check_ids(rows: list[dict], path) -> None:
    """One canonical form for ids: a non-empty string without surrounding whitespace, or an integer (written
    as its decimal string). Two ids that are one id ignoring case (``P1`` and ``p1``, ``7`` and ``"7"``) are
    refused: files, URLs and Label Studio tasks would mix them up. A DataError names the rows."""
    bad = [(i, repr(r["id"])[:60]) for i, r in enumerate(rows, start=1)
           if not ((isinstance(r["id"], int) and not isinstance(r["id"], bool))
                   or (isinstance(r["id"], str) and r["id"].strip() and r["id"] == r["id"].strip()))]
    if bad:
        raise DataError(path, "id is a non-empty string without surrounding whitespace, or an integer",
                        column="id", rows=bad, detail=f"{len(bad)} of {len(rows)} rows")
    first: dict[str, int] = {}
    clashes = []
    for i, r in enumerate(rows, start=1):
        key = str(r["id"]).casefold()
        if key in first:
            clashes.append((i, f"{r['id']!r} is row {first[key]}'s id"))
        first.setdefault(key, i)
    if clashes:
        raise DataError(path, "unique ids, ignoring case (7 and \"7\" are one id)", column="id", rows=clashes,
                        detail=f"{len(clashes)} rows repeat an id")


def split_prompts(rows: list[dict], heldout_fraction: float, salt: str,
                  train_only: set[str] = frozenset(), keep: set[str] = frozenset()) -> list[dict]:
    """Assign ``split`` to each row from the salted hash of its prompt's canonical text
    (``tasks/heldout.py``), so a prompt keeps its side whatever other prompts come and go. Prompts whose key
    is in ``train_only``, or whose digest is in ``keep`` (``data/incoming/keep_in_train.json``), never go to
    heldout."""
    heldout = {t for t in {prompt_key(prompt_of(r)) for r in rows}
               if t not in train_only and is_heldout(t, salt, heldout_fraction) and prompt_digest(t) not in keep}
    out = []
    for r in rows:
        p = prompt_of(r)
        out.append({"id": str(r["id"]), ("messages" if isinstance(p, list) else "prompt"): p,
                    "split": "heldout" if prompt_key(p) in heldout else "train",
                    "source": r.get("source", "unknown")})
    return out


def run_prepare(params: Params) -> dict:
    import mlflow

    from tasks import provenance, tracking

    cfg = params.prepare
    with tracking.stage_run("prepare", params):
        source = Path(cfg.input)
        if source.exists() and not source.resolve().is_relative_to(Path.cwd().resolve()):
            # Allowed: the run's lineage tags and dvc.lock record its hash, though git and DVC do not version it.
            print(f"prepare: reading {source.resolve()}, outside the project (md5 {file_md5(source)}); its hash "
                  "is in the run's dvc.md5 tag and dvc.lock, but the file itself is not versioned here",
                  file=sys.stderr, flush=True)
        rows = read_jsonl(cfg.input)
        missing = [(i, f"keys={sorted(r)}") for i, r in enumerate(rows, start=1) if "id" not in r]
        if missing:
            raise DataError(cfg.input, "required column", column="id", rows=missing,
                            detail=f"{len(missing)} of {len(rows)} rows lack 'id'")
        missing = [(i, f"keys={sorted(r)}") for i, r in enumerate(rows, start=1)
                   if ("prompt" in r) == ("messages" in r)]
        if missing:
            raise DataError(cfg.input, "required column", column="prompt", rows=missing,
                            detail=f"{len(missing)} of {len(rows)} rows need exactly one of 'prompt' (text) or "
                                   "'messages' (chat)")
        check_ids(rows, cfg.input)
        demo_texts = {prompt_key(prompt_of(d)) for d in read_jsonl(DEMOS)} if DEMOS.exists() else set()
        keep = provenance.read_keep(KEEP_IN_TRAIN)
        out = split_prompts(rows, cfg.heldout_fraction, cfg.salt, demo_texts, keep)
        sides = {side: sum(r["split"] == side for r in out) for side in ("train", "heldout")}
        if not all(sides.values()):          # each prompt is drawn on its own: a few prompts can leave one empty
            raise DataError(cfg.input, "prompts on both sides of the split",
                            detail=f"{len(out)} prompts gave {sides['train']} train and {sides['heldout']} held out at "
                                   f"prepare.heldout_fraction {cfg.heldout_fraction} (prepare.salt "
                                   f"{cfg.salt!r}); add prompts, or change the fraction")
        # Before writing: a held-out prompt this experiment trained on stops the stage with nothing written.
        provenance.check(out, str(cfg.input), mlflow.MlflowClient())
        write_jsonl(OUT, out)
        record = provenance.split_record(out, cfg.salt, cfg.heldout_fraction)
        mlflow.log_dict(record, provenance.HELDOUT_ARTIFACT)
        mlflow.set_tags(provenance.split_tags(record))
        # The same text under two ids is kept (both rows land in one split; the prompt weighs twice), counted.
        metrics = {"prompts": len(out), "train": sum(r["split"] == "train" for r in out),
                   "heldout": sum(r["split"] == "heldout" for r in out),
                   "repeated_texts": len(out) - len({prompt_key(prompt_of(r)) for r in out}),
                   # distinct texts the hash holds out that the keep-in-train file keeps in training
                   "kept_in_train": len({k for k in (prompt_key(prompt_of(r)) for r in rows)
                                         if k not in demo_texts and prompt_digest(k) in keep
                                         and is_heldout(k, cfg.salt, cfg.heldout_fraction)})}
        if metrics["kept_in_train"]:
            print(f"prepare: {metrics['kept_in_train']} prompt(s) the split would hold out stay in training "
                  f"({KEEP_IN_TRAIN}); {metrics['heldout']} of {metrics['prompts']} prompts are held out "
                  f"({metrics['heldout'] / metrics['prompts']:.1%}, against prepare.heldout_fraction "
                  f"{cfg.heldout_fraction})", file=sys.stderr, flush=True)
        mlflow.log_metrics(metrics)
    return metrics
