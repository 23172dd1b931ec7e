"""Stage ``bootstrap``: the base policy, trained from the corpus (or a pointer to ``policy.base_model``), registered
in MLflow.
"""

from __future__ import annotations

from tasks import tracking
from tasks.bootstrap import example_prompt, train_base
from tasks.config import GenerateConfig
from tasks.io import atomic_path, dvc_md5, write_json
from tasks.mlmodels import log_policy
from tasks.paths import BASE as BASE_DIR
from tasks.paths import BOOTSTRAP_REPORT
from tasks.policy import write_meta
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import mlflow

    params = ctx.params
    with stage_run("bootstrap", ctx) as run:
        metrics: dict = {}
        with atomic_path(BASE_DIR, is_dir=True) as out:
            out.mkdir(parents=True, exist_ok=True)
            if params.policy.base_model is not None:
                write_meta(out, {"pointer": params.policy.base_model, "source": "policy.base_model"})
                metrics["trained"] = 0
            else:
                metrics.update(train_base(params, out, lambda k, v, s: mlflow.log_metric(k, v, step=s)))
            # The champion alias moves when the champion stage seeds a lineage from this base, not here: a
            # reproduction that retrains the same base (same content, same version) leaves the registry as it is.
            # The base's MLflow model samples with generate's default settings (not the params' values: a
            # change of sampling must not retrain the base); callers pass their own as predict params.
            gen = GenerateConfig()
            version = tracking.register_model(
                "policy", run.info.run_id,
                lambda: log_policy(out, example_prompt(), max_new_tokens=gen.max_new_tokens,
                                   temperature=gen.temperature, source=BASE_DIR),
                content=dvc_md5(out),
                tags={"source": "bootstrap", "promotion_reason": "base policy of the lineage"},
                description="Base policy written by the bootstrap stage.", experiment=ctx.experiment)
            meta = {"registry_name": "policy", "registry_version": version, "run_id": run.info.run_id,
                    "source": "bootstrap"}
            if params.policy.base_model is not None:
                meta["pointer"] = params.policy.base_model
            write_meta(out, meta)
        metrics["registry_version"] = version
        tracking.log_final(metrics, "policy", version)
        write_json(BOOTSTRAP_REPORT, metrics)
    return metrics
