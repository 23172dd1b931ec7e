"""Stage ``train_reward``: a Bradley-Terry reward model trained on the labelled pairs, scored on held-out pairs."""

from __future__ import annotations

from tasks import tracking
from tasks.io import atomic_path, dvc_md5, write_json, write_meta_files
from tasks.launch import launch_reward
from tasks.mlmodels import log_reward_model
from tasks.paths import REWARD as OUT
from tasks.paths import REWARD_METRICS
from tasks.reward_model import META, meta
from tasks.reward_training import labelled_pairs, preferences, train_reward_model
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import mlflow

    params = ctx.params
    cfg = params.reward
    with stage_run("train_reward", ctx) as run:
        of, rows = preferences(params)
        train, val = labelled_pairs(params, (of, rows))
        example = (of[0], rows[0]["chosen"]) if rows else (None, "")     # the MLflow model's input example
        mlflow.set_tag("reward.launcher", cfg.launcher)
        mixed = tracking.record_precision(params)
        with atomic_path(OUT, is_dir=True) as out:
            log = tracking.MetricLog()
            if cfg.launcher == "accelerate":
                stats = launch_reward(train, val, cfg, out, log, mixed)
            else:
                stats = train_reward_model(train, val, cfg, out, log, mixed)
            version = tracking.register_model(
                "reward-model", run.info.run_id,
                lambda: log_reward_model(out, example, step=stats.get("train_steps", 0)),
                aliases=["challenger"], content=dvc_md5(out),
                tags={"heldout_accuracy": f"{stats.get('heldout_accuracy', float('nan')):.4f}"},
                description="Bradley-Terry reward model trained by the train_reward stage.",
                experiment=ctx.experiment)
            write_meta_files(out, META, {**meta(out), "registry_name": "reward-model", "registry_version": version})
        stats["registry_version"] = version
        tracking.log_final(stats, "reward-model", version)
        write_json(REWARD_METRICS, stats)
    return stats
