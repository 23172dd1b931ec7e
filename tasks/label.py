"""Stage ``label``: turn the k responses per prompt into preference pairs, and label them.

Pairs come from ``label.pairs`` (see ``tasks/pairs.py``). The labeler is
``label.source``:

- ``ai``: the AI judge (``tasks/judges.py``) scores every response; in each pair
  the higher score is chosen, with confidence ``sigmoid(10 * margin)``.
  Labeler ``ai:minilm-constitution``.
- ``simulated``: the hidden-truth annotator (``tasks/truth.py``), which stands
  in for a human rater: Bradley-Terry on hidden scores with ``truth.noise``
  label flips. Labeler ``human:simulated-annotator``.

Every row records its labeler. Pairs whose two responses are the same text are
dropped (they carry no preference) and counted, and so are pairs with an
empty response (the labels contract allows none). For the bundled task the stage
also logs how often the labels agree with the hidden truth (over pairs whose
hidden scores differ), which is how a
judge's quality is watched without the judge ever seeing the truth.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path

from tasks.config import Params
from tasks.io import read_jsonl, write_jsonl
from tasks.pairs import build_pairs
from tasks.prepare import normalize

GENERATIONS = Path("data/generations.jsonl")
PROMPTS = Path("data/prompts.jsonl")
OUT = Path("data/labels.jsonl")
SIMULATED = "human:simulated-annotator"


def group_generations(rows: list[dict]) -> "OrderedDict[str, list[dict]]":
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        groups.setdefault(str(r["prompt_id"]), []).append(r)
    return groups


def label_groups(groups, prompt_text: dict, params: Params) -> tuple[list[dict], dict]:
    """Label rows and counters for the grouped generations."""
    from tasks import truth
    from tasks.corpus import dish_of

    cfg = params.label
    rng = random.Random(cfg.seed)
    ids = list(groups)
    flat_prompts = [prompt_text[pid] for pid in ids for _ in groups[pid]]
    flat_resp = [g["response"] for pid in ids for g in groups[pid]]
    truth_scores = [truth.truth_score(dish_of(p), r).total for p, r in zip(flat_prompts, flat_resp)]
    if cfg.source == "ai":
        from tasks.judges import ConstitutionJudge, pair_confidence

        judge = ConstitutionJudge(cfg.judge_batch_size)
        scores, labeler = judge.score(flat_prompts, flat_resp), judge.name
    else:
        scores, labeler = truth_scores, SIMULATED

    rows, skipped, empty, agree, decided, offset = [], 0, 0, 0, 0, 0
    for pid in ids:
        gens = groups[pid]
        s = scores[offset:offset + len(gens)]
        t = truth_scores[offset:offset + len(gens)]
        offset += len(gens)
        for i, j in build_pairs(cfg.pairs, s, n_random=cfg.random_pairs_per_prompt, rng=rng):
            a, b = gens[i], gens[j]
            if not a["response"].strip() or not b["response"].strip():
                empty += 1
                continue
            if normalize(a["response"]) == normalize(b["response"]):
                skipped += 1
                continue
            if cfg.source == "ai":
                a_wins = s[i] >= s[j]
                conf = pair_confidence(max(s[i], s[j]), min(s[i], s[j]))
            else:
                a_wins, p_a = truth.simulated_preference(
                    prompt_text[pid], a["response"], b["response"], temperature=params.truth.temperature,
                    noise=params.truth.noise, seed=cfg.seed, key=(a["response_id"], b["response_id"]))
                conf = p_a if a_wins else 1 - p_a
            (c, ci), (r, ri) = ((a, i), (b, j)) if a_wins else ((b, j), (a, i))
            if t[ci] != t[ri]:
                decided += 1
                agree += t[ci] > t[ri]
            rows.append({"prompt_id": pid, "chosen": c["response"], "rejected": r["response"],
                         "chosen_id": c["response_id"], "rejected_id": r["response_id"],
                         "labeler": labeler, "confidence": round(float(conf), 6),
                         "score_chosen": round(float(s[ci]), 6), "score_rejected": round(float(s[ri]), 6)})
    stats = {"pairs": len(rows), "skipped_identical": skipped, "skipped_empty": empty, "prompts_labelled": len({r["prompt_id"] for r in rows}),
             "truth_agreement": agree / max(1, decided),
             "mean_confidence": sum(r["confidence"] for r in rows) / max(1, len(rows))}
    return rows, stats


def run_label(params: Params) -> dict:
    import mlflow

    from tasks import tracking

    with tracking.stage_run("label", params.tracking, sections={"label": params.label, "truth": params.truth},
                            inputs=[GENERATIONS, PROMPTS]):
        prompt_text = {str(r["id"]): r["prompt"] for r in read_jsonl(PROMPTS)}
        groups = group_generations(read_jsonl(GENERATIONS))
        rows, stats = label_groups(groups, prompt_text, params)
        write_jsonl(OUT, rows)
        mlflow.log_metrics(stats)
        mlflow.set_tag("labeler", rows[0]["labeler"] if rows else "none")
    return stats
