"""People's feedback, in the shape ``label.feedback`` names, read from annotation rows and turned into tables.

Annotation rows (one per annotator and item) come from a file
(``label.source: file``, ``label.file_format: annotations``) or from Label
Studio's export (``tasks/labelers/label_studio.py``). Every row names its
prompt (``prompt_id`` of ``data/prompts.jsonl``, or the ``prompt`` text or
``messages`` itself) and its ``annotator``; the rest depends on the shape:

=============  ===========================================================
comparison     ``a``, ``b`` (the two responses), ``choice``: a | b | tie;
               optional ``a_id``, ``b_id``
likert         ``response``, ``rating``: an integer 1-5; optional ``response_id``
attributes     ``response``, ``scores``: {criterion: 1-5} for criteria of the rubric
comment        ``response``, ``comment``: free text
=============  ===========================================================

Optional everywhere: ``seconds`` (time spent, for throughput) and ``at`` (when,
ISO 8601; the labels row keeps the latest as ``annotated_at``). The conversion
rules are in ``tasks/labels/convert.py``; this module does the reading, the
checks (each failure names the file, the row and the rule) and, for comments,
the judging.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tasks.errors import DataError
from tasks.judges import build_judge
from tasks.labelers.base import Labels
from tasks.labels.convert import CHOICES, Comparison, Rating, comparisons_to_rows, ratings_to_rows
from tasks.prompting import last_user_turn, prompt_key
from tasks.rubric import load_rubric

SHAPE_COLUMNS = {"comparison": ("a", "b", "choice"), "likert": ("response", "rating"),
                 "attributes": ("response", "scores"), "comment": ("response", "comment")}


@dataclass
class Annotations:
    """Annotations of one shape, ready to convert, with what label quality needs."""
    shape: str
    items: list = field(default_factory=list)          # Comparison or Rating
    seconds: dict = field(default_factory=dict)        # annotator -> [seconds per annotation]
    rows: list = field(default_factory=list)           # the annotation rows as read (logged to MLflow)


def _pid(prompt) -> str:
    return "h" + hashlib.sha1(prompt_key(prompt).encode()).hexdigest()[:12]


def _text_id(prefix: str, text: str) -> str:
    return f"{prefix}{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def read_annotations(rows: list[dict], shape: str, path, known: dict, weights: dict | None = None) -> Annotations:
    """Annotation rows of one shape -> :class:`Annotations`. ``known`` maps prompt ids to prompts."""
    out = Annotations(shape, rows=rows)
    needed = SHAPE_COLUMNS[shape]
    for i, r in enumerate(rows, start=1):
        missing = [c for c in (*needed, "annotator") if r.get(c) is None]
        if missing:
            raise DataError(path, f"a {shape} annotation has {', '.join(needed)} and annotator", column=missing[0],
                            rows=[(i, sorted(r))])
        prompt = r.get("messages") if r.get("messages") is not None else r.get("prompt")
        if prompt is None and str(r.get("prompt_id")) not in known:
            raise DataError(path, "prompt ids exist in the prompts", column="prompt_id",
                            rows=[(i, repr(r.get("prompt_id")))],
                            detail="a row without its own prompt must name a prompt of data/prompts.jsonl")
        pid = str(r["prompt_id"]) if r.get("prompt_id") is not None else _pid(prompt)
        annotator = str(r["annotator"])
        if shape == "comparison":
            if r["choice"] not in CHOICES:
                raise DataError(path, f"choice is one of {', '.join(CHOICES)}", column="choice",
                                rows=[(i, repr(r["choice"]))])
            for col in ("a", "b"):
                if not isinstance(r[col], str) or not r[col].strip():
                    raise DataError(path, "responses are non-empty strings", column=col, rows=[(i, repr(r[col]))])
            out.items.append(Comparison(pid, str(r.get("a_id") or _text_id("a", r["a"])),
                                        str(r.get("b_id") or _text_id("b", r["b"])), r["a"], r["b"], r["choice"],
                                        annotator, prompt, r.get("at") or None))
        else:
            if not isinstance(r["response"], str):
                raise DataError(path, "response is a string", column="response", rows=[(i, repr(r["response"]))])
            rid = str(r.get("response_id") or _text_id(f"{pid}:", r["response"]))
            kw = {}
            if shape == "likert":
                v = r["rating"]
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
                    raise DataError(path, "rating is an integer from 1 to 5", column="rating", rows=[(i, repr(v))])
                kw["value"] = float(v)
            elif shape == "attributes":
                s = r["scores"]
                bad = (not isinstance(s, dict) or not s
                       or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= 5
                              for v in s.values()))
                if bad:
                    raise DataError(path, "scores map criteria to numbers from 1 to 5", column="scores",
                                    rows=[(i, repr(s)[:80])])
                unknown = sorted(set(s) - set(weights or {}))
                if unknown:
                    raise DataError(path, "scored criteria are criteria of the rubric (task.rubric)",
                                    column="scores", rows=[(i, unknown)],
                                    detail=f"the rubric has {', '.join(sorted(weights or {}))}")
                kw["attributes"] = dict(s)
            else:
                if not isinstance(r["comment"], str) or not r["comment"].strip():
                    raise DataError(path, "comment is a non-empty string", column="comment",
                                    rows=[(i, repr(r["comment"]))])
                kw["comment"] = r["comment"]
            out.items.append(Rating(pid, rid, r["response"], annotator, prompt=prompt, at=r.get("at") or None, **kw))
        if isinstance(r.get("seconds"), (int, float)) and not isinstance(r.get("seconds"), bool):
            out.seconds.setdefault(annotator, []).append(float(r["seconds"]))
    return out


def score_comments(items: list[Rating], prompts: dict, judge) -> list[Rating]:
    """Each comment scored by a scoring judge: the judge reads the comment as its 'response' to the
    request 'What did a reviewer think of this reply to: <prompt>?' and its score becomes the rating."""
    from dataclasses import replace

    asks = [f"What did a reviewer think of this reply to: {last_user_turn(it.prompt or prompts[it.prompt_id])}\n"
            f"Reply: {it.response}" for it in items]
    scores = judge.score(asks, [it.comment for it in items])
    return [replace(it, value=float(s)) for it, s in zip(items, scores)]


def to_tables(ann: Annotations, cfg, weights: dict | None, prompts: dict, comment_judge=None):
    """(pair rows, ratings rows, counters) for one shape, by the rules of ``tasks/labels/convert.py``."""
    if ann.shape == "comparison":
        rows, stats = comparisons_to_rows(ann.items)
        return rows, [], stats
    items = ann.items
    margin, threshold = cfg.likert_margin, cfg.kto_threshold
    if ann.shape == "comment":
        items = score_comments(items, prompts, comment_judge)
        margin, threshold = cfg.comment_margin, None
    return ratings_to_rows(items, margin, weights if ann.shape == "attributes" else None, threshold)


def human_labels(annotation_rows: list[dict], path, cfg, ctx, prompts: dict, extra: dict | None = None):
    """People's annotation rows -> :class:`tasks.labelers.Labels` (checked, converted, comments judged)."""

    weights = None
    if cfg.feedback == "attributes":
        weights = {c.name: c.weight for c in load_rubric(ctx.task.rubric).criteria}
    ann = read_annotations(annotation_rows, cfg.feedback, path, prompts, weights)
    judge = build_judge(cfg.comment_judge, ctx) if cfg.feedback == "comment" else None
    rows, ratings, stats = to_tables(ann, cfg, weights, prompts, judge)
    return Labels(rows, {**(extra or {}), **stats}, ratings, ann, weights)
