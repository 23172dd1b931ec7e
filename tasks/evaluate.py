"""Stage ``evaluate``: the candidate against the champion on held-out prompts, by every judge the task trusts.

For every held-out prompt, both policies sample ``evaluate.samples_per_prompt``
responses, each on its own random stream derived from ``evaluate.seed``
(``role_seed``: reproducible, and independent of the other policy's draws);
sample j of the candidate meets sample j of the champion. Each comparison is
judged by every judge of ``evaluate.judges`` (``winrate_<name>``) and, in an environment with a hidden truth, by its
simulated annotator (``winrate_truth``); on a user's task there is no truth
and no such number. Two equal texts (after case and whitespace folding) tie
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

import json
from pathlib import Path

from tasks.config import Params
from tasks.io import read_jsonl, write_json, write_jsonl
from tasks.paths import CANDIDATE, EVAL_METRICS, EVAL_ROWS, KEY_METRICS, PROMPTS, REWARD, REWARD_METRICS
from tasks.prompting import prompt_of


def metric(name: str):
    import evaluate

    local = Path("metrics") / name
    if not local.exists():
        local = Path(__file__).resolve().parents[1] / "metrics" / name
    return evaluate.load(str(local))


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
    from tasks.rollout import sample_batches

    return [r for r, _ in sample_batches(model, tok, prompts, cfg.samples_per_prompt, batch_size=cfg.batch_size,
                                         seed=seed, temperature=cfg.temperature,
                                         max_new_tokens=cfg.max_new_tokens, device=device)]


def rollout_pair(cand_model, champ_model, tok, prompts: list, cfg, device: str) -> tuple[list, list]:
    """(candidate's rollouts, champion's rollouts) of ``cfg.samples_per_prompt`` samples per prompt, each policy
    on its own stream (``role_seed``)."""
    return (_rollouts(cand_model, tok, prompts, cfg, device, role_seed(cfg.seed, "candidate")),
            _rollouts(champ_model, tok, prompts, cfg, device, role_seed(cfg.seed, "champion")))


def judge_outcomes(judge, prompts: list, keys: list, cand: list[str], champ: list[str]) -> list[float]:
    """Outcome (1 win / 0.5 tie / 0 loss) of each candidate-vs-champion comparison by ``judge``.
    Equal texts tie without being shown to the judge."""
    from tasks.evalmath import outcome
    from tasks.text import normalize

    ask = [i for i, (a, b) in enumerate(zip(cand, champ)) if normalize(a) != normalize(b)]
    out = [0.5] * len(cand)
    if ask:
        v = judge.compare([prompts[i] for i in ask], [cand[i] for i in ask], [champ[i] for i in ask],
                          keys=[keys[i] for i in ask])
        for i, a_wins in zip(ask, v.a_wins):
            out[i] = outcome(a_wins)
    return out


def human_pair_metrics(path: str, judges: dict, rm) -> dict:
    """The reward model's accuracy and each judge's agreement with held-out human pairs.

    Chosen is shown as A on even rows and as B on odd ones, so a judge with a
    position bias is not flattered by always finding the human's choice first.
    """
    from tasks.judges.math import agreement
    from tasks.labelers.file import read_preferences
    from tasks.rewardmodel import pair_text, pairwise_stats

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
        v = judge.compare(prompts, a, b, keys=[(f"human{i}",) for i in range(len(rows))])
        m[f"human_agreement_{name}"] = agreement(v.p_a, [not sw for sw in swap])
    return m


# The figures of a cycle that `dvc metrics show` and `dvc metrics diff` list, besides every win-rate and its CI.
KEY = ("kl", "reward_mean", "reward_mean_champion")


def key_metrics(evaluation: dict, reward_report: dict) -> dict:
    """The cycle's key figures (``reports/metrics.json``): every ``winrate_*`` of the evaluation (with its CI
    bounds), ``KEY``, and the reward model's held-out accuracy from the train_reward report. The details stay in
    the stages' own reports."""
    out = {k: v for k, v in evaluation.items() if k.startswith("winrate_")}
    out.update({k: evaluation[k] for k in KEY if k in evaluation})
    if "heldout_accuracy" in reward_report:
        out["reward_model_accuracy"] = reward_report["heldout_accuracy"]
    return out


def run_evaluate(params: Params) -> dict:
    import mlflow

    from tasks import tracking
    from tasks.envs import info, load_env
    from tasks.evalmath import sequence_kl
    from tasks.judges import JudgeContext, build_judge, judge_files
    from tasks.policy import load_policy, pick_device, read_meta
    from tasks.rewardmodel import RewardModel
    from tasks.rollout import token_logprobs
    from tasks.shard import cluster

    cfg = params.evaluate
    champion = Path(params.policy.champion_dir)
    extra = ([cfg.human_pairs] if cfg.human_pairs else []) + judge_files(params.judges, cfg.judges)
    with tracking.stage_run("evaluate", params, extra_inputs=extra), cluster(params.scale) as scale:
        from tasks import provenance

        rows = read_jsonl(PROMPTS)
        # The gate's evidence must be held out from every iteration of this lineage, this one included.
        provenance.check(rows, str(PROMPTS), mlflow.MlflowClient())
        ctx = JudgeContext.of(params, cfg.seed, scale=scale)
        judges = {name: build_judge(name, ctx) for name in cfg.judges}
        if info(params.task.env).has_truth:
            judges["truth"] = load_env(params.task.env).annotator(params.truth, cfg.seed)
        held = [r for r in rows if r["split"] == "heldout"]
        base = [prompt_of(r) for r in held]
        n = cfg.samples_per_prompt
        prompts = [p for p in base for _ in range(n)]
        pids = [str(r["id"]) for r in held for _ in range(n)]
        device = pick_device(cfg.device, "evaluate.device")
        dtype = tracking.record_precision(params, device, sampling=True).dtype
        cand_model, tok = load_policy(CANDIDATE, device, dtype)
        champ_model, _ = load_policy(champion, device, dtype)
        versions = {who: str(read_meta(path).get("registry_version")) for who, path in
                    (("candidate", CANDIDATE), ("champion", champion))}
        tracking.name_run(f"evaluate policy v{versions['candidate']} vs v{versions['champion']}",
                          **{"rft.candidate_version": versions["candidate"],
                             "rft.champion_version": versions["champion"]})
        cand_r, champ_r = rollout_pair(cand_model, champ_model, tok, base, cfg, device)
        kls = [float(x) for r in cand_r for x in sequence_kl(token_logprobs(cand_model, r, cfg.temperature),
                                                             token_logprobs(champ_model, r, cfg.temperature),
                                                             r.response_mask)]
        cand = [t for r in cand_r for t in r.texts]
        champ = [t for r in champ_r for t in r.texts]
        rm = RewardModel(REWARD, params.reward.max_length)
        r_cand, r_champ = rm.score_responses(prompts, cand), rm.score_responses(prompts, champ)
        keys = [(pid, i) for i, pid in enumerate(pids)]
        outcomes = {name: judge_outcomes(j, prompts, keys, cand, champ) for name, j in judges.items()}

        win, dist, stats = metric("winrate"), metric("distinct"), metric("policy_stats")
        m: dict = {}
        for name, out in outcomes.items():
            w = win.compute(outcomes=out, groups=pids, n_boot=cfg.n_boot, seed=cfg.seed)
            m.update({f"winrate_{name}": w["winrate"], f"winrate_{name}_ci_low": w["ci_low"],
                      f"winrate_{name}_ci_high": w["ci_high"]})
            m.update({f"judge_{name}.{k}": float(v) for k, v in judges[name].stats.items()})
        for who, texts_, rewards, ended, kl in (("", cand, r_cand, [e for r in cand_r for e in r.ended], kls),
                                                ("_champion", champ, r_champ, [e for r in champ_r for e in r.ended],
                                                 [0.0] * len(champ))):
            s = stats.compute(rewards=rewards, kls=kl, lengths=[len(t.split()) for t in texts_],
                              ended=[int(e) for e in ended])
            d = dist.compute(predictions=texts_)
            m.update({f"reward_mean{who}": s["reward_mean"], f"mean_length{who}": s["mean_length"],
                      f"eos_rate{who}": s["eos_rate"], f"distinct_1{who}": d["distinct_1"],
                      f"distinct_2{who}": d["distinct_2"]})
        m["kl"] = sum(kls) / len(kls)
        m["comparisons"] = len(prompts)
        m["heldout_prompts"] = len(held)
        if cfg.human_pairs:
            # AI judges only: people are not asked to label the held-out human pairs again.
            ai = {k: v for k, v in judges.items() if k != "truth" and not v.name.startswith("human:")}
            m.update(human_pair_metrics(cfg.human_pairs, ai, rm))

        rows = []
        for i, pid in enumerate(pids):
            base_row = {"prompt_id": pid, "sample": i % n, "candidate": cand[i], "champion": champ[i],
                        "kl": kls[i], "length": len(cand[i].split()), "length_champion": len(champ[i].split()),
                        "reward": r_cand[i], "reward_champion": r_champ[i]}
            for name, judge in judges.items():
                rows.append({**base_row, "judge": judge.name, "win": outcomes[name][i]})
        write_jsonl(EVAL_ROWS, rows)
        write_json(EVAL_METRICS, m)
        reward_report = json.loads(REWARD_METRICS.read_text()) if REWARD_METRICS.exists() else {}
        write_json(KEY_METRICS, key_metrics(m, reward_report))
        mlflow.log_metrics({tracking.metric_name(k): v for k, v in m.items()})
        table = {"prompt": [str(p) for p in prompts[:40]], "candidate": cand[:40], "champion": champ[:40]}
        table.update({f"win_{name}": out[:40] for name, out in outcomes.items()})
        mlflow.log_table(table, artifact_file="heldout_samples.json")
        mlflow.set_tag("evaluate.runner", scale.runner)
    return m
