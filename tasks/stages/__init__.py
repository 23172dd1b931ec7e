"""The stages of a cycle, one module each, named as in ``dvc.yaml``: ``tasks/stages/<stage>.py`` holds the
stage's ``run(ctx)``, a thin adapter that reads the stage's declared inputs, calls the components that do
the work, and writes and logs its outputs. ``tasks/manifest.py`` declares what each reads and writes.

``REGISTRY`` maps each stage's name to its function itself (no dotted strings): ``rft stage``, the Prefect
flow and the tests run a stage through :func:`run_stage`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from tasks.errors import ConfigError
from tasks.manifest import STAGES, stage_view
from tasks.stages import (bootstrap, champion, corpus, evaluate, generate, label, optimize, prepare, train_reward,
                          validate_labels, validate_prompts)
from tasks.stages.common import StageContext

REGISTRY: dict[str, Callable[[StageContext], dict]] = {
    "corpus": corpus.run,
    "bootstrap": bootstrap.run,
    "champion": champion.run,
    "prepare": prepare.run,
    "validate_prompts": validate_prompts.run,
    "generate": generate.run,
    "label": label.run,
    "validate_labels": validate_labels.run,
    "train_reward": train_reward.run,
    "optimize": optimize.run,
    "evaluate": evaluate.run,
}


def run_stage(name: str, ctx: StageContext) -> dict:
    """Run the stage ``name`` in ``ctx`` (a ConfigError naming the stages when there is none)."""
    if name not in REGISTRY:
        raise ConfigError(f"no stage named {name!r} (stages: {', '.join(STAGES)})")
    # The stage reads params through its view: a key its manifest entry does not declare is an error.
    return REGISTRY[name](dataclasses.replace(ctx, params=stage_view(ctx.params, name)))
