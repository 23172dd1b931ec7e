"""The work of stage ``evaluate`` (its adapter: ``tasks/stages/evaluate.py``): the candidate against the champion on
held-out prompts, by every judge the task trusts.

For every held-out prompt, both policies sample ``evaluate.samples_per_prompt``
responses, each on its own random stream derived from ``evaluate.seed``
(``role_seed``: reproducible, and independent of the other policy's draws);
sample j of the candidate meets sample j of the champion. Each comparison is
judged by every judge of ``evaluate.judges`` (``winrate_<name>``) and, in an environment with a hidden truth, by its
simulated annotator (``winrate_truth``); on a user's task there is no truth
and no such number. A grader of ``evaluate.judges`` (``tasks/judges/graders.py``) scores every
response once; the higher score wins, and besides its win-rate the stage reports
``grader_<name>.*``: each policy's mean score and pass rate (score at least the
grader's ``pass_threshold``) and their paired differences (``score_diff``,
``pass_diff``), each with a CI that resamples prompts (``tasks/evalmath.py::grader_metrics``).

``evaluate.regression`` names suites the candidate must not lose ground on (the "alignment tax"): a grader
suite (``grader_suite``: a fixed prompt set, both policies' answers scored by a grader, the paired difference
with its CI) or a perplexity suite (``perplexity_suite``: both policies' perplexity on reference texts, the
ratio with its CI). Their figures are ``regression_<suite>.*``, bounds included; the gate
(``tasks/promotion_gate.py``) refuses a candidate whose CI does not rule out a loss beyond a suite's bound. Two equal texts (after case and whitespace folding) tie
without asking a judge; a tie counts one half. Each win-rate gets a 95%
bootstrap CI that resamples prompts. Judges' own statistics (position flip rate,
ensemble agreement) are reported as ``judge_<name>.<stat>``.

The stage also measures the cycle's reward model's mean score of each policy,
KL(candidate || reference) on the candidate's sampled tokens (reference = the
champion, which the optimizer was anchored to), distinct-1/2, mean length in
words and EOS rate. With ``evaluate.human_pairs`` (held-out human preference
pairs) it reports the reward model's accuracy on them and each judge's
agreement with the humans.

Metrics are computed through the ``evaluate`` modules in ``metrics/``
(``evaluate.load(<local folder>)``, offline), written to
``reports/eval/metrics.json`` and logged to MLflow; per-prompt, per-judge rows
go to ``data/eval.jsonl``. The cycle's key figures (``key_metrics``) go to
``reports/metrics.json``, the project's one DVC metrics file.
"""

from __future__ import annotations

from dataclasses import replace

from tasks import rollout
from tasks.errors import DataError
from tasks.evalmath import grader_metrics, outcome, perplexity_metrics
from tasks.io import read_jsonl
from tasks.judgemath import agreement
from tasks.labelers.file import read_preferences
from tasks.prompting import prompt_of
from tasks.reward_model import pair_text, pairwise_stats
from tasks.text import normalize
from tasks.validate import field_problem


# The two samplers of an evaluation, each on its own random stream.
ROLES = ("candidate", "champion")


def role_seed(seed: int, role: str) -> int:
    """The sampler seed of ``role`` (one of ``ROLES``) in an evaluation seeded with ``seed``:
    ``seed * 2 + ROLES.index(role)``. Reproducible, and no two (seed, role) pairs share it, so sample j of the
    candidate and sample j of the champion are independent draws (shared draws make two similar policies write
    the same text far more often than they would apart: more ties, a biased win-rate)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: evaluation samples as one of {ROLES}")
    return seed * len(ROLES) + ROLES.index(role)


def _rollouts(model, tok, prompts: list, cfg, device: str, seed: int) -> list:
    return [r for r, _ in rollout.sample_batches(model, tok, prompts, cfg.samples_per_prompt, batch_size=cfg.batch_size,
                                         seed=seed, temperature=cfg.temperature,
                                         max_new_tokens=cfg.max_new_tokens, device=device)]


def rollout_pair(cand_model, champ_model, tok, prompts: list, cfg, device: str) -> tuple[list, list]:
    """(candidate's rollouts, champion's rollouts) of ``cfg.samples_per_prompt`` samples per prompt, each policy
    on its own stream (``role_seed``)."""
    return (_rollouts(cand_model, tok, prompts, cfg, device, role_seed(cfg.seed, "candidate")),
            _rollouts(champ_model, tok, prompts, cfg, device, role_seed(cfg.seed, "champion")))


def judge_outcomes(judge, prompts: list, keys: list, cand: list[str], champ: list[str],
                   rows: list | None = None) -> list[float]:
    """Outcome (1 win / 0.5 tie / 0 loss) of each candidate-vs-champion comparison by ``judge``.
    Equal texts tie without being shown to the judge. ``rows``: each comparison's prompt row (a grader reads its
    reference fields)."""

    ask = [i for i, (a, b) in enumerate(zip(cand, champ)) if normalize(a) != normalize(b)]
    out = [0.5] * len(cand)
    if ask:
        v = judge.compare([prompts[i] for i in ask], [cand[i] for i in ask], [champ[i] for i in ask],
                          keys=[keys[i] for i in ask], rows=None if rows is None else [rows[i] for i in ask])
        for i, a_wins in zip(ask, v.a_wins):
            out[i] = outcome(a_wins)
    return out


def scored_outcomes(sc: list[float], sh: list[float], cand: list[str], champ: list[str]) -> list[float]:
    """Outcomes from a grader's scores of the candidate's (``sc``) and champion's (``sh``) responses: the higher
    score wins, equal scores tie, and equal texts tie whatever their scores (as ``judge_outcomes`` has it)."""
    return [0.5 if normalize(a) == normalize(b) or x == y else float(x > y)
            for x, y, a, b in zip(sc, sh, cand, champ)]


def human_pair_metrics(path: str, judges: dict, rm) -> dict:
    """The reward model's accuracy and each judge's agreement with held-out human pairs.

    Chosen is shown as A on even rows and as B on odd ones, so a judge with a
    position bias is not flattered by always finding the human's choice first.
    """

    rows, stats = read_preferences(path)
    prompts = [r.get("messages") or r.get("prompt") for r in rows]
    m = {"human_pairs": len(rows), "human_pairs_dropped": stats["dropped"]}
    s = pairwise_stats(rm.score([pair_text(p, r["chosen"]) for p, r in zip(prompts, rows)]),
                       rm.score([pair_text(p, r["rejected"]) for p, r in zip(prompts, rows)]))
    m["reward_human_accuracy"] = s["accuracy"]
    swap = [i % 2 == 1 for i in range(len(rows))]
    a = [r["rejected"] if sw else r["chosen"] for r, sw in zip(rows, swap)]
    b = [r["chosen"] if sw else r["rejected"] for r, sw in zip(rows, swap)]
    for name, judge in judges.items():
        if judge.fields:             # a grader that needs a reference the human pairs do not carry
            print(f"evaluate: human_agreement_{name} not measured: {name} reads the prompts' "
                  f"{', '.join(judge.fields)}, which the human pairs do not carry", flush=True)
            continue
        v = judge.compare(prompts, a, b, keys=[(f"human{i}",) for i in range(len(rows))])
        m[f"human_agreement_{name}"] = agreement(v.p_a, [not sw for sw in swap])
    return m


# The figures of a cycle that `dvc metrics show` and `dvc metrics diff` list, besides every win-rate and its CI.
KEY = ("kl", "reward_mean", "reward_mean_champion")


def key_metrics(evaluation: dict, reward_report: dict) -> dict:
    """The cycle's key figures (``reports/metrics.json``): every ``winrate_*`` of the evaluation (with its CI
    bounds), each grader's pass rates and paired differences (with theirs), ``KEY``, and the reward model's held-out accuracy from the train_reward report. The details stay in
    the stages' own reports."""
    out = {k: v for k, v in evaluation.items() if k.startswith("winrate_")}
    # a grader's pass rates and paired differences, with their CIs
    out.update({k: v for k, v in evaluation.items() if k.startswith("grader_") and (
        k.split(".", 1)[1].startswith(("pass_rate", "pass_diff", "score_diff")))})
    out.update({k: evaluation[k] for k in KEY if k in evaluation})
    if "heldout_accuracy" in reward_report:
        out["reward_model_accuracy"] = reward_report["heldout_accuracy"]
    return out




def grader_suite(name: str, suite, judge_of, cand_model, champ_model, tok, cfg, device: str, fields_of=None) -> dict:
    """Regression suite ``name`` of kind grader: both policies answer its prompts (``suite.samples_per_prompt``
    each, on their own streams), its grader (``judge_of(suite.grader)``) scores the answers, and the metrics are ``grader_metrics``' with
    ``gate_diff`` (the difference the gate reads: ``pass_diff`` or ``score_diff``) and ``max_drop``."""
    grader = judge_of(suite.grader)
    rows = read_jsonl(suite.prompts)
    bad = [(i, f"keys={sorted(r)}") for i, r in enumerate(rows, start=1)
           if "id" not in r or ("prompt" in r) == ("messages" in r)]
    if bad:
        raise DataError(suite.prompts, "an id and one of prompt (text) or messages (chat)", rows=bad,
                        detail=f"regression suite {name}")
    seen: dict[str, int] = {}
    twice = [(i, f"{r['id']!r} is row {seen[str(r['id'])]}'s id") for i, r in enumerate(rows, start=1)
             if seen.setdefault(str(r["id"]), i) != i]
    if twice:
        raise DataError(suite.prompts, "unique ids", column="id", rows=twice, detail=f"regression suite {name}")
    # what the grader reads, and whether as text (reference_fields); without that map, every field as text
    needs = fields_of(suite.grader) if fields_of is not None else {f: {"text": True} for f in grader.fields}
    for field, need in needs.items():
        missing = [(i, repr(r.get(field))[:40]) for i, r in enumerate(rows, start=1)
                   if field_problem(r.get(field), need["text"])]
        if missing:
            raise DataError(suite.prompts, f"{field} is a non-blank text or a list of them (read by "
                            f"{grader.name.split(':', 1)[-1]})", column=field, rows=missing,
                            detail=f"regression suite {name}")
    n = suite.samples_per_prompt
    base = [prompt_of(r) for r in rows]
    scfg = replace(cfg, samples_per_prompt=n)
    cand_r, champ_r = rollout_pair(cand_model, champ_model, tok, base, scfg, device)
    cand = [t for r in cand_r for t in r.texts]
    champ = [t for r in champ_r for t in r.texts]
    prompts = [p for p in base for _ in range(n)]
    rep = [r for r in rows for _ in range(n)]
    sc, sh = grader.score(prompts, cand, rep), grader.score(prompts, champ, rep)
    m = grader_metrics(sc, sh, grader.pass_threshold, [str(r["id"]) for r in rep], n_boot=cfg.n_boot, seed=cfg.seed)
    # what the gate reads: the statistic of suite.statistic (pass rate or mean score) and its paired difference
    of, diff = ("pass_rate", "pass_diff") if suite.statistic == "pass_rate" else ("score", "score_diff")
    m.update({"gate_value": m[of], "gate_value_champion": m[f"{of}_champion"], "gate_on_score": float(of == "score"),
              "gate_diff": m[diff], "gate_diff_ci_low": m[f"{diff}_ci_low"], "max_drop": suite.max_drop,
              "prompts": float(len(rows))})
    return {f"regression_{name}.{k}": float(v) for k, v in m.items()}


def perplexity_suite(name: str, suite, judge_of, cand_model, champ_model, tok, cfg, device: str,
                     fields_of=None) -> dict:
    """Regression suite ``name`` of kind perplexity: both policies' perplexity on its texts, the ratio with its
    CI (``perplexity_metrics``) and ``max_ratio`` (1 + ``suite.max_increase``), which the gate reads."""
    rows = read_jsonl(suite.texts)[:suite.max_texts]
    bad = [(i, repr(r)[:60]) for i, r in enumerate(rows, start=1)
           if not isinstance(r.get("text"), str) or not r["text"].strip()]
    if bad:
        raise DataError(suite.texts, "'text' is a non-blank string", column="text", rows=bad,
                        detail=f"regression suite {name}")
    texts = [r["text"] for r in rows]
    m = perplexity_metrics(rollout.text_nll(cand_model, tok, texts, batch_size=cfg.batch_size, device=device),
                           rollout.text_nll(champ_model, tok, texts, batch_size=cfg.batch_size, device=device),
                           n_boot=cfg.n_boot, seed=cfg.seed)
    m.update({"max_ratio": 1.0 + suite.max_increase, "texts": float(len(texts))})
    return {f"regression_{name}.{k}": float(v) for k, v in m.items()}


# evaluate.regression's kinds (tasks/config.py::SUITE_KINDS), each computed by its function.
SUITES = {"grader": grader_suite, "perplexity": perplexity_suite}


def regression_metrics(suites: dict, judge_of, cand_model, champ_model, tok, cfg, device: str,
                       fields_of=None) -> dict:
    """The figures of every suite of ``evaluate.regression`` (``regression_<suite>.*``). ``judge_of(name)``
    builds a grader; ``fields_of(name)`` says which reference fields it reads (``judges.reference_fields``)."""
    out: dict = {}
    for name, suite in suites.items():
        out.update(SUITES[suite.kind](name, suite, judge_of, cand_model, champ_model, tok, cfg, device, fields_of))
    return out
