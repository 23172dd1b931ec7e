"""Environments: task bundles that ship a corpus, a rubric and, for demos, a hidden truth.

``task.env`` names one: ``reviews`` (the demo, with a hidden truth), ``arithmetic`` (a verifiable task: graders
check its answers, ``examples/arithmetic/``), or ``none``, the user's own task: the user brings the
prompts, the model (or a corpus to bootstrap one from), the rubric and the
preference files, and there is no hidden truth, so anything that needs one
(``label.source: simulated``, ``promote.winrate_source: truth``, a judge of
kind ``simulated``) is a configuration error.

Generic stages never import an environment package. They ask this registry,
which maps each name to its module and says, without importing it, whether it
has a truth (``params.yaml`` is checked against that before any compute).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tasks.errors import ConfigError

NONE = "none"


@dataclass(frozen=True)
class EnvInfo:
    module: str
    has_truth: bool
    rubric: str            # the environment's own rubric file, relative to the project root
    writes_corpus: bool = True   # a generator writes its corpus and prompts (none: the user's files)
    suites: tuple[str, ...] = ()  # the regression suites it writes to data/corpus/regression/


REGISTRY: dict[str, EnvInfo] = {
    NONE: EnvInfo("tasks.envs.none", has_truth=False, rubric="", writes_corpus=False),
    "reviews": EnvInfo("tasks.envs.reviews", has_truth=True, rubric="tasks/envs/reviews/rubric.yaml",
                       suites=("texts.jsonl",)),
    "arithmetic": EnvInfo("tasks.envs.arithmetic", has_truth=False, rubric="tasks/envs/arithmetic/rubric.yaml",
                          suites=("larger.jsonl",)),
}
NAMES = tuple(REGISTRY)


def info(name: str) -> EnvInfo:
    if name not in REGISTRY:
        raise ConfigError(f"task.env: unknown environment {name!r} (known: {', '.join(NAMES)})")
    return REGISTRY[name]


def load_env(name: str):
    """The environment object: ``write_corpus(cfg, out_dir)``, ``annotator(truth_cfg, seed)``, ``has_truth``."""
    return importlib.import_module(info(name).module).ENVIRONMENT
