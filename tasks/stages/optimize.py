"""Stage ``optimize``: the champion turned into a candidate by ``optimize.algorithm``, with its probe curve."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from tasks import provenance, tracking
from tasks.algorithms import REGISTRY
from tasks.io import atomic_path, dvc_md5, read_jsonl, write_json
from tasks.judges import judge_files
from tasks.launch import launch_optimize
from tasks.mlmodels import log_policy
from tasks.optimize import final_figures, fingerprint, log_table, probe, prober, selector, setup, train_policy
from tasks.paths import CANDIDATE as OUT
from tasks.paths import CHECKPOINTS, CURVE, CURVE_PNG, LABELS, PROMPTS, RATINGS
from tasks.paths import OPTIMIZE_REPORT as REPORT
from tasks.plots import curve_png
from tasks.policy import load_policy, pick_device, read_meta, write_meta
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import mlflow
    import torch

    params = ctx.params
    cfg = params.optimize
    algo = REGISTRY[cfg.algorithm]
    champion = Path(params.policy.champion_dir)
    names = list(cfg.reward) + list(algo.judges(cfg).values())   # for lineage
    names += [cfg.select_judge] if cfg.select == "best" else []
    with stage_run("optimize", ctx, extra_inputs=judge_files(params.judges, names)) as run:
        # Recorded first: a prompt this stage may train on is never held out later (tasks/provenance.py).
        provenance.log_trained(provenance.trained_digests(
            read_jsonl(PROMPTS), read_jsonl(LABELS, allow_empty=True) if LABELS.exists() else [],
            read_jsonl(RATINGS, allow_empty=True) if RATINGS.exists() else []))
        torch.manual_seed(cfg.seed)
        device = pick_device("auto")
        # The policy is loaded before the reference, as it always was: the seeded run stays the same run.
        model = None if cfg.launcher == "accelerate" else load_policy(champion, device)[0]
        s = setup(params, champion, device)
        ref, tok, reward, probe_prompts, info = s.ref, s.tok, s.reward, s.probe_prompts, s.info
        curve: list[dict] = []

        log = tracking.MetricLog()
        ckpt = CHECKPOINTS / fingerprint(params, champion)
        for stale in (CHECKPOINTS.iterdir() if CHECKPOINTS.is_dir() else []):
            if stale != ckpt:
                shutil.rmtree(stale, ignore_errors=True)
        mlflow.set_tags({"optimize.checkpoint": str(ckpt), "optimize.launcher": cfg.launcher,
                         # each reward's weight beside its curve (health/probe_reward.<name>)
                         **{f"optimize.reward_weight.{n}": f"{w:g}" for n, w in zip(cfg.reward, s.weights)}})
        mixed = tracking.record_precision(params, device)
        # optimize.select: best (config refuses it with the accelerate launcher)
        select = selector(s, params, log, ckpt) if cfg.launcher != "accelerate" else None
        if cfg.launcher == "accelerate":
            trained, trained_info = launch_optimize(params, champion, ckpt, device, log, curve, log_table, mixed)
        else:
            trained, trained_info = train_policy(params, s, model, champion, ckpt, log,
                                                 prober(s, cfg, log, curve, select=select))
        info.update(trained_info)
        trained.eval()
        steps = info.get("steps")
        # The curve ends at the candidate: the scheduled probe of the last step, or one made now.
        final = final_figures(curve, steps, lambda: probe(
            trained, ref, tok, reward, probe_prompts, cfg.probe_temperature, cfg.probe_max_new_tokens,
            cfg.seed + (10**6 if steps is None else steps)), log)
        if select is not None:
            # the best scored model becomes the candidate; its probe figures are the curve's at its step
            best_step, best_score = select.restore(trained)
            info.update(selected_step=best_step, select_score=best_score,
                        select_score_last=dict(select.history).get(steps, float("nan")) if steps is not None
                        else float("nan"), validation_prompts=len(s.val_rows))
            at = {r["step"]: r for r in curve}.get(best_step)
            if at is not None:
                final = {"probe_reward": at["reward"], "probe_kl": at["kl"], "probe_length": at["length"],
                         "probe_eos_rate": at["eos_rate"]}
            else:       # its step's probe was skipped (probe_budget) or ran before a resume: probe it now
                final = probe(trained, ref, tok, reward, probe_prompts, cfg.probe_temperature,
                              cfg.probe_max_new_tokens, cfg.seed + best_step)
            print(f"optimize: select best: step {best_step} of {steps} scored {best_score:.4f} by "
                  f"{cfg.select_judge} on {len(s.val_rows)} validation prompts; it is the candidate", flush=True)
        with atomic_path(OUT, is_dir=True) as out:
            trained.save_pretrained(out)
            tok.save_pretrained(out)
            parent = read_meta(champion)
            version = tracking.register_model(
                "policy", run.info.run_id,
                lambda: log_policy(out, probe_prompts[0] if probe_prompts else None,
                                   max_new_tokens=cfg.probe_max_new_tokens, temperature=cfg.probe_temperature,
                                   source=OUT, loaded=(trained, tok), step=steps or 0),
                aliases=["challenger"], content=dvc_md5(out),
                tags={"source": f"optimize:{cfg.algorithm}", "parent_version": str(parent.get("registry_version"))},
                description=f"Candidate from {cfg.algorithm} on policy v{parent.get('registry_version')}.",
                experiment=ctx.experiment)
            write_meta(out, {"registry_name": "policy", "registry_version": version, "run_id": run.info.run_id,
                             "source": f"optimize:{cfg.algorithm}", "parent_version": parent.get("registry_version"),
                             "base_md5": parent.get("base_md5")})
        CURVE.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(CURVE) as tmp_csv, tmp_csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["step", "reward", "kl", "length"], extrasaction="ignore")
            w.writeheader()
            w.writerows(sorted({r["step"]: r for r in curve}.values(), key=lambda r: r["step"]))
        curve_png(list({r["step"]: r for r in curve}.values()), CURVE_PNG,
                  f"{cfg.algorithm} on policy v{parent.get('registry_version')}: probe on {len(probe_prompts)} "
                  "training prompts")
        mlflow.log_artifact(str(CURVE_PNG))
        numbers = {k: v for k, v in info.items() if isinstance(v, (int, float))}
        metrics = {**numbers, **{f"final_{k}": v for k, v in final.items()}, "registry_version": version,
                   "start_reward": curve[0]["reward"] if curve else float("nan")}
        tracking.log_final(metrics, "policy", version)
        write_json(REPORT, {**metrics, "algorithm": cfg.algorithm,
                            **{k: v for k, v in info.items() if isinstance(v, str)}})
        shutil.rmtree(ckpt, ignore_errors=True)
    return metrics
