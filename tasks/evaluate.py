"""Stage ``evaluate``: the candidate against the champion on held-out prompts.

For every held-out prompt, both policies sample ``evaluate.samples_per_prompt``
responses with the same seeds; sample j of the candidate meets sample j of the
champion. Each comparison is judged twice:

- by the **hidden-truth simulated annotator** (``winrate_truth``), the stand-in
  for human raters, with its noise;
- by the **AI judge** (``winrate_judge``), which never sees the truth.

A tie (the same text, or equal judge scores) counts one half. Each win-rate
gets a 95% bootstrap CI that resamples prompts. The stage also measures the
reward model's mean score of each policy, KL(candidate || reference) on the
candidate's sampled tokens (reference = the champion, which the optimizer was
anchored to), distinct-1/2, mean length in words and EOS rate.

Metrics are computed through the ``evaluate`` modules in ``metrics/``
(``evaluate.load(<local folder>)``, offline), written to
``reports/eval/metrics.json`` (DVC metrics) and logged to MLflow; per-prompt,
per-judge rows go to ``data/eval.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

from tasks.config import Params
from tasks.io import read_jsonl, write_json, write_jsonl

PROMPTS = Path("data/prompts.jsonl")
CANDIDATE = Path("models/candidate")
REWARD = Path("models/reward")
ROWS = Path("data/eval.jsonl")
METRICS = Path("reports/eval/metrics.json")


def metric(name: str):
    import evaluate

    local = Path("metrics") / name
    if not local.exists():
        local = Path(__file__).resolve().parents[1] / "metrics" / name
    return evaluate.load(str(local))


def _rollouts(model, tok, prompts: list[str], cfg, device: str) -> list:
    from tasks.rollout import sample_batches

    return [r for r, _ in sample_batches(model, tok, prompts, cfg.samples_per_prompt, batch_size=cfg.batch_size,
                                         seed=cfg.seed, temperature=cfg.temperature,
                                         max_new_tokens=cfg.max_new_tokens, device=device)]


def compare(prompts: list[str], prompt_ids: list[str], cand: list[str], champ: list[str], judge_scores, params: Params):
    """Outcomes (1 / 0.5 / 0) of each candidate-vs-champion comparison, by truth and by judge."""
    from tasks import truth
    from tasks.evalmath import outcome
    from tasks.prepare import normalize

    cfg = params.evaluate
    out_truth, out_judge = [], []
    for i, (p, pid, a, b) in enumerate(zip(prompts, prompt_ids, cand, champ)):
        if normalize(a) == normalize(b):
            out_truth.append(0.5)
            out_judge.append(0.5)
            continue
        a_wins, _ = truth.simulated_preference(p, a, b, temperature=params.truth.temperature,
                                               noise=params.truth.noise, seed=cfg.seed, key=(pid, i))
        out_truth.append(outcome(a_wins))
        sa, sb = judge_scores[0][i], judge_scores[1][i]
        out_judge.append(outcome(None if sa == sb else sa > sb))
    return out_truth, out_judge


def run_evaluate(params: Params) -> dict:
    import mlflow

    from tasks import tracking
    from tasks.evalmath import sequence_kl
    from tasks.judges import ConstitutionJudge
    from tasks.policy import load_policy, pick_device
    from tasks.reward import RewardModel, pair_text
    from tasks.rollout import token_logprobs

    cfg = params.evaluate
    champion = Path(params.policy.champion_dir)
    with tracking.stage_run("evaluate", params.tracking, sections={"evaluate": cfg, "truth": params.truth},
                            inputs=[PROMPTS, CANDIDATE, champion, REWARD]):
        held = [r for r in read_jsonl(PROMPTS) if r["split"] == "heldout"]
        texts = [r["prompt"] for r in held]
        n = cfg.samples_per_prompt
        prompts = [p for p in texts for _ in range(n)]
        pids = [str(r["id"]) for r in held for _ in range(n)]
        device = pick_device(params.generate.device)
        cand_model, tok = load_policy(CANDIDATE, device)
        champ_model, _ = load_policy(champion, device)
        cand_r, champ_r = _rollouts(cand_model, tok, texts, cfg, device), _rollouts(champ_model, tok, texts, cfg, device)
        kls = [float(x) for r in cand_r for x in sequence_kl(token_logprobs(cand_model, r, cfg.temperature),
                                                             token_logprobs(champ_model, r, cfg.temperature),
                                                             r.response_mask)]
        cand = [t for r in cand_r for t in r.texts]
        champ = [t for r in champ_r for t in r.texts]
        rm = RewardModel(REWARD, params.reward.max_length)
        r_cand = rm.score([pair_text(p, t) for p, t in zip(prompts, cand)])
        r_champ = rm.score([pair_text(p, t) for p, t in zip(prompts, champ)])
        judge = ConstitutionJudge(params.label.judge_batch_size)
        j_cand, j_champ = judge.score(prompts, cand), judge.score(prompts, champ)
        out_truth, out_judge = compare(prompts, pids, cand, champ, (j_cand, j_champ), params)

        win, dist, stats = metric("winrate"), metric("distinct"), metric("policy_stats")
        m: dict = {}
        for name, outcomes in (("truth", out_truth), ("judge", out_judge)):
            w = win.compute(outcomes=outcomes, groups=pids, n_boot=cfg.n_boot, seed=cfg.seed)
            m.update({f"winrate_{name}": w["winrate"], f"winrate_{name}_ci_low": w["ci_low"],
                      f"winrate_{name}_ci_high": w["ci_high"]})
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

        rows = []
        for i, (pid, p) in enumerate(zip(pids, prompts)):
            base = {"prompt_id": pid, "sample": i % n, "candidate": cand[i], "champion": champ[i],
                    "kl": kls[i], "length": len(cand[i].split()), "length_champion": len(champ[i].split())}
            rows.append({**base, "judge": "human:simulated-annotator", "win": out_truth[i],
                         "reward": r_cand[i], "reward_champion": r_champ[i]})
            rows.append({**base, "judge": judge.name, "win": out_judge[i], "reward": j_cand[i],
                         "reward_champion": j_champ[i]})
        write_jsonl(ROWS, rows)
        write_json(METRICS, m)
        mlflow.log_metrics(m)
        mlflow.log_table({"prompt": prompts[:40], "candidate": cand[:40], "champion": champ[:40],
                          "truth_win": out_truth[:40], "judge_win": out_judge[:40]}, artifact_file="heldout_samples.json")
    return m
