"""Stage ``evaluate``: candidate and champion compared on the held-out prompts by ``evaluate.judges`` (and the truth,
in a demo environment).
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks import provenance, tracking
from tasks.envs import info, load_env
from tasks.evalmath import grader_metrics, sequence_kl
from tasks.evaluate import (human_pair_metrics, judge_outcomes, key_metrics, regression_metrics, rollout_pair,
                            scored_outcomes)
from tasks.io import read_jsonl, write_json, write_jsonl
from tasks.judges import JudgeContext, build_judge, judge_files, reference_fields
from tasks.metric_modules import metric
from tasks.paths import CANDIDATE, EVAL_METRICS, EVAL_ROWS, KEY_METRICS, PROMPTS, REWARD, REWARD_METRICS
from tasks.policy import load_policy, pick_device, read_meta
from tasks.prompting import prompt_of
from tasks.reward_model import RewardModel
from tasks.rollout import token_logprobs
from tasks.stages.common import StageContext, stage_run
from tasks.workers import cluster


def run(ctx: StageContext) -> dict:
    import mlflow

    params = ctx.params
    cfg = params.evaluate
    champion = Path(params.policy.champion_dir)
    suite_graders = [s.grader for s in cfg.regression.values() if s.kind == "grader"]
    extra = ([cfg.human_pairs] if cfg.human_pairs else []) + judge_files(params.judges, [*cfg.judges, *suite_graders])
    with stage_run("evaluate", ctx, extra_inputs=extra), cluster(params.scale) as scale:
        rows = read_jsonl(PROMPTS)
        # The gate's evidence must be held out from every iteration of this lineage, this one included.
        provenance.check(rows, str(PROMPTS), mlflow.MlflowClient())
        judging = JudgeContext.of(params, cfg.seed, scale=scale)
        judges = {name: build_judge(name, judging) for name in cfg.judges}
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
        tracking.name_run(ctx.run_name(f"evaluate policy v{versions['candidate']} vs v{versions['champion']}"),
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
        prompt_rows = [r for r in held for _ in range(n)]
        outcomes, graded = {}, {}
        for name, j in judges.items():
            if j.pass_threshold is None:
                outcomes[name] = judge_outcomes(j, prompts, keys, cand, champ, prompt_rows)
            else:           # a grader: each response scored once; its win-rate, pass rates and differences
                graded[name] = (j.score(prompts, cand, prompt_rows), j.score(prompts, champ, prompt_rows))
                outcomes[name] = scored_outcomes(*graded[name], cand, champ)

        win, dist, stats = metric("winrate"), metric("distinct"), metric("policy_stats")
        m: dict = {}
        for name, out in outcomes.items():
            w = win.compute(outcomes=out, groups=pids, n_boot=cfg.n_boot, seed=cfg.seed)
            m.update({f"winrate_{name}": w["winrate"], f"winrate_{name}_ci_low": w["ci_low"],
                      f"winrate_{name}_ci_high": w["ci_high"]})
            m.update({f"judge_{name}.{k}": float(v) for k, v in judges[name].stats.items()})
        for name, (sc, sh) in graded.items():
            m.update({f"grader_{name}.{k}": v for k, v in grader_metrics(
                sc, sh, judges[name].pass_threshold, pids, n_boot=cfg.n_boot, seed=cfg.seed).items()})
        for who, texts_, rewards, ended, kl in (("", cand, r_cand, [e for r in cand_r for e in r.ended], kls),
                                                ("_champion", champ, r_champ, [e for r in champ_r for e in r.ended],
                                                 [0.0] * len(champ))):
            s = stats.compute(rewards=rewards, kls=kl, lengths=[len(t.split()) for t in texts_],
                              ended=[int(e) for e in ended])
            d = dist.compute(predictions=texts_)
            m.update({f"reward_mean{who}": s["reward_mean"], f"mean_length{who}": s["mean_length"],
                      f"eos_rate{who}": s["eos_rate"], f"distinct_1{who}": d["distinct_1"],
                      f"distinct_2{who}": d["distinct_2"]})
        m.update(regression_metrics(cfg.regression, lambda name: build_judge(name, judging), cand_model, champ_model,
                                    tok, cfg, device, lambda name: reference_fields(params.judges, [name])))
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
                scores = ({"score": graded[name][0][i], "score_champion": graded[name][1][i]} if name in graded
                          else {})
                rows.append({**base_row, "judge": judge.name, "win": outcomes[name][i], **scores})
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
