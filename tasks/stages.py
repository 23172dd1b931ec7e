"""The cycle's stages in order: name -> function(params) -> metrics. ``dvc.yaml`` runs the same functions."""

from __future__ import annotations

from typing import Callable

from tasks.config import Params


def _registry() -> dict[str, Callable[[Params], dict]]:
    from tasks.bootstrap import run_bootstrap, run_corpus
    from tasks.champion import run_champion
    from tasks.evaluate import run_evaluate
    from tasks.optimize import run_optimize
    from tasks.reward import run_train_reward
    from tasks.generate import run_generate
    from tasks.label import run_label
    from tasks.prepare import run_prepare
    from tasks.validate import run_validate_labels, run_validate_prompts

    return {
        "corpus": run_corpus,
        "bootstrap": run_bootstrap,
        "champion": run_champion,
        "prepare": run_prepare,
        "validate_prompts": run_validate_prompts,
        "generate": run_generate,
        "label": run_label,
        "validate_labels": run_validate_labels,
        "train_reward": run_train_reward,
        "optimize": run_optimize,
        "evaluate": run_evaluate,
    }


STAGES = ["corpus", "bootstrap", "champion", "prepare", "validate_prompts", "generate", "label",
          "validate_labels", "train_reward", "optimize", "evaluate"]

# The metric a summary table shows for each stage, and the output it points to.
KEY_METRIC = {
    "corpus": ("texts", "data/corpus"),
    "bootstrap": ("sft_val_loss_after", "models/base"),
    "champion": ("registry_version", "models/champion"),
    "prepare": ("heldout", "data/prompts.jsonl"),
    "validate_prompts": ("rows", "reports/data_docs/prompts/"),
    "generate": ("tokens_per_second", "data/generations.jsonl"),
    "label": ("truth_agreement", "data/labels.jsonl"),
    "validate_labels": ("rows", "reports/data_docs/labels/"),
    "train_reward": ("heldout_accuracy", "models/reward"),
    "optimize": ("final_probe_reward", "models/candidate"),
    "evaluate": ("winrate_truth", "reports/eval/metrics.json"),
}


def run_stage(name: str, params: Params) -> dict:
    registry = _registry()
    if name not in registry:
        raise KeyError(name)
    return registry[name](params)
