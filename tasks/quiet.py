"""Known-harmless messages of the libraries the pipeline runs, filtered where they are logged.

Each entry names the logger, the start of the message, and why it is harmless here. A filter on a named
logger drops only those records: every other message of that logger, and of every other logger, still
reaches the console. ``install()`` runs when the ``tasks`` package is imported (before the libraries log).
"""

from __future__ import annotations

import logging

HARMLESS: dict[str, tuple[tuple[str, str], ...]] = {
    "transformers.modeling_utils": (
        ("`loss_type=None` was set in the config",
         "a GPT-2 config names no loss type; transformers uses the causal-LM loss, the one intended"),
        ("We strongly recommend passing in an `attention_mask`",
         "generate() leaves out an attention mask of all ones (a batch with no padding), and a finished sequence "
         "then feeds EOS, the policy's pad token, to the next decoding step, which this check takes for padding; "
         "a padded batch keeps its mask"),
    ),
    "transformers.utils.generic": (
        ("`use_cache=True` is incompatible with gradient checkpointing",
         "the reward and policy trainers checkpoint activations, and caching is off while they train"),
    ),
    "great_expectations.data_context.types.base": (
        ("Created temporary directory",
         "GX's ephemeral context makes a scratch docs site; the project writes its Data Docs to reports/"),
    ),
    "dvc.dvcfile": (
        ("Generating lock file", "said once, right before \"Updating lock file\" of the same first write"),
    ),
    "dvc.output": (
        ("'data/ratings.jsonl' is empty",
         "the ratings file is empty by design when nobody rated (AI judges label pairs, not ratings)"),
    ),
    "mlflow.store.db.utils": (
        ("Creating initial MLflow database tables", "the first run of a project creates its local store"),
        ("Updating database tables", "the same first run brings the new store's schema up to date"),
    ),
    "mlflow.transformers": (
        ("The model card could not be retrieved",
         "MLflow looks the policy up on the Hugging Face hub for a card; the folder is local, the hub offline"),
        ("Unable to find license information", "the license comes from that card"),
        ("text-generation pipelines saved with prompt templates",
         "a policy's pipeline returns the response without the prompt, as a caller wants"),
        ("params provided to the `predict` method will override",
         "said while MLflow runs the input example with the signature's default params"),
    ),
    "mlflow.pyfunc": (
        ("Validating input example against model signature", "MLflow checks the input example; it passes"),
    ),
}


class DropHarmless(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def install() -> None:
    """Put one filter on each logger of ``HARMLESS`` (again: a second call replaces the first)."""
    for name, entries in HARMLESS.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, DropHarmless)]:
            logger.removeFilter(old)
        logger.addFilter(DropHarmless(tuple(prefix for prefix, _ in entries)))
