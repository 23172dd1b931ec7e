"""Stage ``champion``: ``models/champion`` seeded from the base policy when a lineage starts; kept as it is otherwise."""

from __future__ import annotations

from pathlib import Path

from tasks.champion import missing_champion, reseed_message
from tasks.io import dvc_md5
from tasks.paths import BASE
from tasks.policy import check_model_folder, install_policy, read_meta
from tasks.stages.common import StageContext, stage_run


def run(ctx: StageContext) -> dict:
    import mlflow

    params = ctx.params
    champion = Path(params.policy.champion_dir)
    with stage_run("champion", ctx):
        base_hash = dvc_md5(BASE)
        if champion.exists():
            check_model_folder(champion)        # a damaged champion stops here, before dvc.lock records it
        meta = read_meta(champion) if champion.exists() else {}
        if meta.get("base_md5") == base_hash:
            result = {"seeded": 0, "registry_version": meta.get("registry_version", 0)}
        else:
            if champion.exists():
                print(reseed_message(champion, meta, base_hash, params.champion.reseed), flush=True)
            else:
                missing_champion(champion, read_meta(BASE), params.champion.reseed)
            base_meta = read_meta(BASE)
            install_policy(BASE, champion, {**base_meta, "base_md5": base_hash})
            result = {"seeded": 1, "registry_version": base_meta.get("registry_version", 0)}
            if base_meta.get("registry_version") is not None and not ctx.experiment:
                # A new lineage starts from this base: it is the champion in the registry too.
                version = str(base_meta["registry_version"])
                mlflow.MlflowClient().set_registered_model_alias("policy", "champion", version)
        mlflow.log_metrics({k: float(v) for k, v in result.items()})
    return result
