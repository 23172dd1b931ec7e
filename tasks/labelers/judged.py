"""Labelers ``judge`` and ``simulated``: pairs built from the k responses per prompt, decided by a judge.

Pairs come from ``label.pairs`` (``tasks/pairs.py``); a scoring judge's scores
pick best-vs-worst. Pairs with an empty response or two equal texts (after
case and whitespace folding) carry no preference and are dropped and counted,
and so are the pairs a judge calls a tie. The chosen response is the one the
judge decided for; the confidence is the judge's probability of that choice.
In an environment with a hidden truth, the stage also reports how often the
labels agree with it (over pairs whose hidden scores differ): that is how a
judge's quality is watched without the judge ever seeing the truth.
"""

from __future__ import annotations

import random
from collections import OrderedDict

from tasks.pairs import build_pairs
from tasks.text import normalize


def group_generations(rows: list[dict]) -> "OrderedDict[str, list[dict]]":
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault(str(r["prompt_id"]), []).append(r)
    return groups


def label_groups(groups, prompts: dict, cfg, judge, truth=None) -> tuple[list[dict], dict]:
    """Label rows and counters. ``prompts`` maps prompt id -> prompt (text or messages); ``truth``
    is the environment's annotator when it has one (only for the agreement figure)."""
    rng = random.Random(cfg.seed)
    ids = list(groups)
    flat_p = [prompts[pid] for pid in ids for _ in groups[pid]]
    flat_r = [g["response"] for pid in ids for g in groups[pid]]
    scores = judge.score(flat_p, flat_r) if judge.scores_responses else None
    t_scores = None if truth is None else scores if truth is judge else truth.score(flat_p, flat_r)

    pairs, empty, identical, offset = [], 0, 0, 0       # (pid, index of a, index of b) in the flat lists
    for pid in ids:
        k = len(groups[pid])
        s = scores[offset:offset + k] if scores is not None else [0.0] * k
        for i, j in build_pairs(cfg.pairs, s, n_random=cfg.random_pairs_per_prompt, rng=rng):
            a, b = offset + i, offset + j
            if not flat_r[a].strip() or not flat_r[b].strip():
                empty += 1
            elif normalize(flat_r[a]) == normalize(flat_r[b]):
                identical += 1
            else:
                pairs.append((pid, a, b))
        offset += k
    resp_ids = [g["response_id"] for pid in ids for g in groups[pid]]
    args = ([flat_p[a] for _, a, _ in pairs], [flat_r[a] for _, a, _ in pairs], [flat_r[b] for _, _, b in pairs])
    keys = [(resp_ids[a], resp_ids[b]) for _, a, b in pairs]
    if scores is not None and hasattr(judge, "compare_scored"):   # every response is scored: decide from those
        verdicts = judge.compare_scored(*args, [scores[a] for _, a, _ in pairs], [scores[b] for _, _, b in pairs],
                                        keys)
    else:
        verdicts = judge.compare(*args, keys=keys)

    rows, ties, agree, decided = [], 0, 0, 0
    for (pid, a, b), p_a, a_wins in zip(pairs, verdicts.p_a, verdicts.a_wins):
        if a_wins is None:
            ties += 1
            continue
        c, r = (a, b) if a_wins else (b, a)
        if t_scores is not None and t_scores[c] != t_scores[r]:
            decided += 1
            agree += t_scores[c] > t_scores[r]
        row = {"prompt_id": pid, "chosen": flat_r[c], "rejected": flat_r[r], "chosen_id": resp_ids[c],
               "rejected_id": resp_ids[r], "labeler": judge.name,
               "confidence": round(float(p_a if a_wins else 1 - p_a), 6)}
        if scores is not None:
            row.update(score_chosen=round(float(scores[c]), 6), score_rejected=round(float(scores[r]), 6))
        rows.append(row)
    stats = {"pairs": len(rows), "skipped_identical": identical, "skipped_empty": empty, "skipped_tie": ties,
             "prompts_labelled": len({r["prompt_id"] for r in rows}),
             "mean_confidence": sum(r["confidence"] for r in rows) / max(1, len(rows)),
             **{f"judge.{k}": v for k, v in judge.stats.items()}}
    if t_scores is not None:
        stats["truth_agreement"] = agree / max(1, decided)
    return rows, stats


def _truth(ctx):
    from tasks.envs import info, load_env

    return load_env(ctx.task.env).annotator(ctx.truth, 0) if info(ctx.task.env).has_truth else None


def label_by_judge(cfg, ctx, prompts: dict, generations: list[dict]):
    from tasks.judges import build_judge
    from tasks.labelers import Labels

    return Labels(*label_groups(group_generations(generations), prompts, cfg, build_judge(cfg.judge, ctx),
                                _truth(ctx)))


def label_by_annotator(cfg, ctx, prompts: dict, generations: list[dict]):
    from tasks.envs import load_env

    annotator = load_env(ctx.task.env).annotator(ctx.truth, cfg.seed)
    # The annotator's scores are the truth's: it is its own agreement reference.
    from tasks.labelers import Labels

    return Labels(*label_groups(group_generations(generations), prompts, cfg, annotator, annotator))
