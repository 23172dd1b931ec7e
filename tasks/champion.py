"""The work of stage ``champion`` (its adapter: ``tasks/stages/champion.py``): the folder the cycle samples from,
seeded from the base policy.

``policy.champion_dir`` is a persistent DVC output (``persist: true``): DVC
never deletes it before running the stage, and promotion (a flow step, not a
stage) replaces its contents and re-records its hash with ``dvc commit``. The
stage copies ``models/base`` into it only when the champion is missing, and
otherwise keeps the promoted champion as it is.

When ``models/base`` changed since the champion was seeded (a new
``policy.base_model``, or new corpus files the bootstrap trains on), reseeding
would replace the champion with the new base and move ``policy@champion`` to
it with no gate. The stage does that only with ``champion.reseed: true``;
otherwise it stops, saying what changed and what to do.
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import RFTError
from tasks.iterations import champion_version
from tasks.paths import BASE


def reseed_message(champion: Path, meta: dict, base_hash: str, reseed: bool) -> str:
    """What replacing ``champion`` (``meta``) with a base of md5 ``base_hash`` means; raises unless ``reseed``."""
    version = f"policy v{meta['registry_version']}" if meta.get("registry_version") is not None else "a policy"
    was = f"md5 {meta['base_md5']}" if meta.get("base_md5") else "no base recorded"
    what = (f"{BASE} changed since {champion} ({version}) was seeded from it ({was}; now md5 {base_hash}): a new "
            "policy.base_model, or new corpus files that the bootstrap stage trained it on")
    if not reseed:
        raise RFTError(f"champion: {what}. Reseeding would replace the champion with the new base and move "
                       "policy@champion to it with no gate. To do that, set champion.reseed: true in params.yaml "
                       "for this cycle; to keep the champion, restore what changed (git checkout the params or "
                       "corpus files, then dvc checkout models/base)")
    return f"champion: {what}. champion.reseed is true: the champion restarts from the new base, with no gate"


def missing_champion(champion: Path, base_meta: dict, reseed: bool) -> None:
    """A missing champion folder is seeded from the base, unless the registry's policy@champion is a promoted
    version (not the base's): then the folder was lost (a fresh clone without dvc pull), and seeding would move
    the alias back to the base with no gate. Raises then, unless ``reseed``."""

    try:
        import mlflow

        alias = champion_version(mlflow.MlflowClient())
    except Exception:  # noqa: BLE001 - no registry yet: nothing to lose
        alias = None
    base = base_meta.get("registry_version")
    if reseed or alias is None or base is None or str(alias) == str(base):
        return
    raise RFTError(f"champion: {champion} is missing, while the registry's policy@champion is v{alias}, not the "
                   f"base (v{base}): restore the folder with `dvc pull {champion}` (or `dvc checkout {champion}`). "
                   "Seeding it from the base would move policy@champion back to the base with no gate; to start "
                   "the lineage over from the base, set champion.reseed: true")
