"""Labelers ``judge`` and ``simulated``: pairs built from the k responses per prompt, decided by a judge.

Pairs come from ``label.pairs`` (``tasks/pairs.py``); a scoring judge's scores
pick best-vs-worst. Pairs with an empty response or two equal texts (after
case and whitespace folding) carry no preference and are dropped and counted,
and so are the pairs a judge calls a tie. The chosen response is the one the
judge decided for; the confidence is the judge's probability of that choice.
In an environment with a hidden truth, the stage also reports how often the
labels agree with it (over pairs whose hidden scores differ): that is how a
judge's quality is watched without the judge ever seeing the truth.

The generations are read as a stream and judged ``CHUNK`` responses (whole
prompt groups) at a time, and each label row is written as it is made, so the
stage's memory does not grow with the number of prompts.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from tasks.envs import info, load_env
from tasks.errors import DataError
from tasks.judges import build_judge
from tasks.labelers.base import Labels
from tasks.pairs import build_pairs
from tasks.paths import GENERATIONS
from tasks.text import normalize

CHUNK = 8192      # responses judged per call: memory stays bounded however many prompts there are


def group_generations(rows: list[dict]) -> "OrderedDict[str, list[dict]]":
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault(str(r["prompt_id"]), []).append(r)
    return groups


def iter_groups(rows: Iterable[dict], source) -> Iterator[tuple[str, list[dict]]]:
    """``(prompt id, its rows)`` from ``rows`` in which each prompt's rows come together, as ``generate``
    writes them; a prompt id that comes back after another one stops with a DataError naming ``source`` and
    the row."""

    seen: set[str] = set()
    pid, group = None, []
    for n, row in enumerate(rows, 1):
        key = str(row["prompt_id"])
        if key != pid:
            if group:
                yield pid, group
            if key in seen:
                raise DataError(source, "the responses of one prompt on consecutive rows", column="prompt_id",
                                rows=[(n, key)], detail=f"prompt_id {key!r} comes back after other prompts")
            seen.add(key)
            pid, group = key, []
        group.append(row)
    if group:
        yield pid, group


def chunks(groups: Iterable[tuple[str, list]], size: int) -> Iterator[list[tuple[str, list]]]:
    """Whole groups, gathered until they hold at least ``size`` rows (the last chunk may hold fewer)."""
    chunk, n = [], 0
    for item in groups:
        chunk.append(item)
        n += len(item[1])
        if n >= size:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


class Counts:
    """The label stage's counters, added up over the chunks; ``stats()`` once every chunk is labelled."""

    def __init__(self):
        self.pairs = self.identical = self.empty = self.ties = self.agree = self.decided = 0
        self.confidence = 0.0
        self.prompts: set[str] = set()

    def stats(self, judge, truth) -> dict:
        out = {"pairs": self.pairs, "skipped_identical": self.identical, "skipped_empty": self.empty,
               "skipped_tie": self.ties, "prompts_labelled": len(self.prompts),
               "mean_confidence": self.confidence / max(1, self.pairs),
               **{f"judge.{k}": v for k, v in judge.stats.items()}}
        if truth is not None:
            out["truth_agreement"] = self.agree / max(1, self.decided)
        return out


def _label_chunk(groups: list[tuple[str, list]], prompts: dict, cfg, judge, truth, rng, counts: Counts,
                 rows: dict | None = None):
    """The label rows of one chunk of prompt groups; ``rng`` (pair picking) and ``counts`` run on across chunks."""
    flat_p = [prompts[pid] for pid, g in groups for _ in g]
    flat_r = [r["response"] for _, g in groups for r in g]
    flat_rows = [(rows or {}).get(pid) for pid, g in groups for _ in g] if judge.fields else None
    scores = judge.score(flat_p, flat_r, flat_rows) if judge.scores_responses else None
    t_scores = None if truth is None else scores if truth is judge else truth.score(flat_p, flat_r)

    pairs, offset = [], 0       # (pid, index of a, index of b) in the flat lists
    for pid, g in groups:
        k = len(g)
        s = scores[offset:offset + k] if scores is not None else [0.0] * k
        for i, j in build_pairs(cfg.pairs, s, n_random=cfg.random_pairs_per_prompt, rng=rng):
            a, b = offset + i, offset + j
            if not flat_r[a].strip() or not flat_r[b].strip():
                counts.empty += 1
            elif normalize(flat_r[a]) == normalize(flat_r[b]):
                counts.identical += 1
            else:
                pairs.append((pid, a, b))
        offset += k
    if not pairs:
        return []
    resp_ids = [r["response_id"] for _, g in groups for r in g]
    args = ([flat_p[a] for _, a, _ in pairs], [flat_r[a] for _, a, _ in pairs], [flat_r[b] for _, _, b in pairs])
    keys = [(resp_ids[a], resp_ids[b]) for _, a, b in pairs]
    if scores is not None and hasattr(judge, "compare_scored"):   # every response is scored: decide from those
        verdicts = judge.compare_scored(*args, [scores[a] for _, a, _ in pairs], [scores[b] for _, _, b in pairs],
                                        keys)
    else:
        verdicts = judge.compare(*args, keys=keys,
                                 rows=None if flat_rows is None else [flat_rows[a] for _, a, _ in pairs])

    labelled = []
    for (pid, a, b), p_a, a_wins in zip(pairs, verdicts.p_a, verdicts.a_wins):
        if a_wins is None:
            counts.ties += 1
            continue
        c, r = (a, b) if a_wins else (b, a)
        if t_scores is not None and t_scores[c] != t_scores[r]:
            counts.decided += 1
            counts.agree += t_scores[c] > t_scores[r]
        row = {"prompt_id": pid, "chosen": flat_r[c], "rejected": flat_r[r], "chosen_id": resp_ids[c],
               "rejected_id": resp_ids[r], "labeler": judge.name,
               "confidence": round(float(p_a if a_wins else 1 - p_a), 6)}
        if scores is not None:
            row.update(score_chosen=round(float(scores[c]), 6), score_rejected=round(float(scores[r]), 6))
        counts.pairs += 1
        counts.confidence += row["confidence"]
        counts.prompts.add(pid)
        labelled.append(row)
    return labelled


def label_stream(groups: Iterable[tuple[str, list]], prompts: dict, cfg, judge, truth=None,
                 chunk: int = CHUNK, rows: dict | None = None) -> tuple[Iterator[dict], dict]:
    """``(rows, stats)``: label rows as they are made, ``chunk`` responses of whole prompt groups judged at a
    time, so memory does not grow with the data; ``stats`` (counters for MLflow) is filled in once ``rows``
    is exhausted. ``prompts`` maps prompt id -> prompt (text or messages), ``rows`` prompt id -> its row of the
    prompts file (a grader reads its reference fields); ``truth`` is the environment's
    annotator when it has one (only for the agreement figure). The pairs, and a per-response judge's
    verdicts, are those of judging every group in one call: pair picking draws from one random stream, and
    the judge's stats cover all of its calls."""
    rng = random.Random(cfg.seed)
    counts, stats = Counts(), {}

    def labelled():
        for part in chunks(groups, chunk):
            yield from _label_chunk(part, prompts, cfg, judge, truth, rng, counts, rows)
        stats.update(counts.stats(judge, truth))
    return labelled(), stats


def label_groups(groups, prompts: dict, cfg, judge, truth=None, chunk: int = CHUNK) -> tuple[list[dict], dict]:
    """``label_stream`` gathered: the rows as a list, and the counters."""
    rows, stats = label_stream(groups.items() if isinstance(groups, dict) else groups, prompts, cfg, judge, truth,
                               chunk)
    return list(rows), stats


def _truth(ctx):
    return load_env(ctx.task.env).annotator(ctx.truth, 0) if info(ctx.task.env).has_truth else None


def label_by_judge(cfg, ctx, prompts: dict, generations: Iterable[dict], rows: dict | None = None):
    return Labels(*label_stream(iter_groups(generations, GENERATIONS), prompts, cfg, build_judge(cfg.judge, ctx),
                                _truth(ctx), rows=rows))


def label_by_annotator(cfg, ctx, prompts: dict, generations: Iterable[dict], rows: dict | None = None):
    annotator = load_env(ctx.task.env).annotator(ctx.truth, cfg.seed)
    # The annotator's scores are the truth's: it is its own agreement reference.
    return Labels(*label_stream(iter_groups(generations, GENERATIONS), prompts, cfg, annotator, annotator))
