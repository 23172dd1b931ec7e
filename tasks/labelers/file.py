"""Labeler ``file``: preference data that people already have, read instead of judging generations.

Three formats, told apart by their columns (``label.file_format: auto``) or named:

- **labels**: the project's own labels schema: ``chosen``, ``rejected``, and
  ``prompt_id`` (a prompt of ``data/prompts.jsonl``) or the prompt itself
  (``prompt`` text or ``messages``); optional ``labeler`` (``human:ID``) and
  ``confidence`` (default 1.0);
- **hh**: HH-RLHF ``chosen``/``rejected`` dialogues, split into (conversation,
  chosen reply, rejected reply) by ``tasks/importers/hh.py``. Pairs whose
  prefixes differ (and other malformed pairs) are reported, dropped and counted;
- **annotations**: one row per annotator and item, in the feedback shape that
  ``label.feedback`` names (``tasks/labelers/feedback.py``): comparisons with
  ties, Likert ratings, multi-attribute scores or comments.

Rows carry their prompt (``prompt`` or ``messages``) so the reward model reads
the conversation that was rated, and ``labeler: human:<annotator or file name>``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from tasks.errors import DataError
from tasks.importers.hh import split_pair
from tasks.io import read_jsonl
from tasks.labelers.base import Labels
from tasks.labelers.feedback import human_labels
from tasks.prompting import prompt_key

ANNOTATION_KEYS = ("choice", "rating", "scores", "comment")


def detect_format(rows: list[dict], path) -> str:
    first = rows[0]
    if any(k in first for k in ANNOTATION_KEYS):
        return "annotations"
    if "prompt_id" in first or "prompt" in first or "messages" in first:
        return "labels"
    if isinstance(first.get("chosen"), str) and "\n\nHuman:" in first["chosen"]:
        return "hh"
    raise DataError(path, "a preference file in the labels schema or the HH-RLHF format", rows=[(1, sorted(first))],
                    detail="cannot tell the format from the columns; set label.file_format")


def _prompt_id(prompt) -> str:
    return "h" + hashlib.sha1(prompt_key(prompt).encode()).hexdigest()[:12]


def read_preferences(path: str | Path, fmt: str = "auto", known: dict | None = None,
                     rows: list[dict] | None = None) -> tuple[list[dict], dict]:
    """(rows in the labels contract, counters) from a preference file (``rows``: its lines, if already read).
    ``known`` maps prompt ids of the prompts file to prompts, for labels rows that give only a ``prompt_id``."""
    rows = read_jsonl(path) if rows is None else rows
    fmt = detect_format(rows, path) if fmt == "auto" else fmt
    if fmt == "annotations":
        raise DataError(path, "a preference file of decided pairs (labels schema or HH-RLHF)",
                        detail="it holds annotation rows (choice, rating, scores or comment); use it as "
                               "label.file with label.file_format: annotations")
    default_labeler = f"human:{Path(path).stem}"
    out, dropped = [], Counter()
    for i, r in enumerate(rows, start=1):
        for col in ("chosen", "rejected"):
            if not isinstance(r.get(col), str):
                raise DataError(path, f"'{col}' is a string", column=col, rows=[(i, repr(r.get(col))[:80])])
        if fmt == "hh":
            pair, reason = split_pair(r["chosen"], r["rejected"])
            if pair is None:
                dropped[reason] += 1
                continue
            prompt, chosen, rejected, labeler, conf = pair.messages, pair.chosen, pair.rejected, default_labeler, 1.0
        else:
            prompt = r.get("messages") if r.get("messages") is not None else r.get("prompt")
            if prompt is None:
                if known is None or str(r.get("prompt_id")) not in known:
                    raise DataError(path, "prompt ids exist in the prompts", column="prompt_id",
                                    rows=[(i, repr(r.get("prompt_id")))],
                                    detail="a row without its own prompt must name a prompt of data/prompts.jsonl")
                prompt = known[str(r["prompt_id"])]
            chosen, rejected = r["chosen"], r["rejected"]
            labeler, conf = r.get("labeler") or default_labeler, r.get("confidence", 1.0)
        row = {"prompt_id": str(r.get("prompt_id") or _prompt_id(prompt)), "chosen": chosen, "rejected": rejected,
               "chosen_id": f"{Path(path).stem}:{i}:chosen", "rejected_id": f"{Path(path).stem}:{i}:rejected",
               "labeler": labeler, "confidence": conf}
        row["messages" if isinstance(prompt, list) else "prompt"] = prompt
        out.append(row)
    stats = {"file_rows": len(rows), "pairs": len(out), "dropped": sum(dropped.values()),
             **{f"dropped: {k}": v for k, v in dropped.items()}}
    return out, stats


def label_from_file(cfg, ctx, prompts: dict, generations=None, rows: dict | None = None):
    rows = read_jsonl(cfg.file)
    fmt = detect_format(rows, cfg.file) if cfg.file_format == "auto" else cfg.file_format
    if fmt == "annotations":
        return human_labels(rows, cfg.file, cfg, ctx, prompts, {"file_rows": len(rows)})
    if cfg.feedback != "comparison":
        raise DataError(cfg.file, f"label.feedback: {cfg.feedback} reads annotation rows",
                        detail=f"the file is in the {fmt} format, which holds decided pairs; set label.feedback: "
                               "comparison, or give one row per annotator and item")
    return Labels(*read_preferences(cfg.file, fmt, prompts, rows))
