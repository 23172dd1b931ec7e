"""Stage ``champion``: the folder the cycle samples from, seeded from the base policy.

``policy.champion_dir`` is a persistent DVC output (``persist: true``): DVC
never deletes it before running the stage, and promotion (a flow step, not a
stage) replaces its contents and re-records its hash with ``dvc commit``. The
stage copies ``models/base`` into it only when the champion is missing or was
seeded from a different base (a retrained base restarts the lineage);
otherwise the promoted champion is kept as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from tasks.config import Params
from tasks.io import dvc_md5
from tasks.policy import check_model_folder, install_policy, read_meta

BASE = Path("models/base")


def run_champion(params: Params) -> dict:
    import mlflow

    from tasks import tracking

    champion = Path(params.policy.champion_dir)
    with tracking.stage_run("champion", params):
        base_hash = dvc_md5(BASE)
        if champion.exists():
            check_model_folder(champion)        # a damaged champion stops here, before dvc.lock records it
        meta = read_meta(champion) if champion.exists() else {}
        if meta.get("base_md5") == base_hash:
            result = {"seeded": 0, "registry_version": meta.get("registry_version", 0)}
        else:
            base_meta = read_meta(BASE)
            install_policy(BASE, champion, {**base_meta, "base_md5": base_hash})
            result = {"seeded": 1, "registry_version": base_meta.get("registry_version", 0)}
            if base_meta.get("registry_version") is not None and not os.environ.get(tracking.DVC_EXP_ENV):
                # A new lineage starts from this base: it is the champion in the registry too.
                version = str(base_meta["registry_version"])
                mlflow.MlflowClient().set_registered_model_alias("policy", "champion", version)
        mlflow.log_metrics({k: float(v) for k, v in result.items()})
    return result
