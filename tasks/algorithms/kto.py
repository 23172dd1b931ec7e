"""``kto``: Kahneman-Tversky Optimization through TRL's ``KTOTrainer``, from responses marked good or bad.

KTO needs no pairs: each example is one (prompt, completion) with a binary
label. ``source`` says where the labels come from:

- ``ratings``: ``data/ratings.jsonl``, the single rated responses of Likert,
  attribute or comment feedback, ``good`` when the score reaches
  ``label.kto_threshold`` (thumbs-up data is the same with scores 0/1);
- ``pairs``: each labelled pair unpaired, chosen as good and rejected as bad;
- ``auto``: ratings when the file has any, else pairs.

``desirable_weight`` and ``undesirable_weight`` balance the two classes; the
KTO paper advises keeping ``desirable_weight * n_good / (undesirable_weight *
n_bad)`` between 1 and 4/3.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.algorithms import base
from tasks.options import opt
from tasks.rollout import context_length, fit_rows


@dataclass(frozen=True)
class Config:
    lr: float = opt(1e-4, "Peak learning rate (linear decay).", gt=0)
    beta: float = opt(0.1, "Strength of the KL anchor to the champion.", gt=0)
    epochs: float = opt(3.0, "Passes over the examples.", gt=0)
    batch_size: int = opt(32, "Examples per optimizer step (KTO estimates its KL baseline per batch: keep it "
                          "at 8 or more).", ge=2)
    source: str = opt("auto", "Where good/bad comes from: ratings (data/ratings.jsonl), pairs (chosen good, "
                      "rejected bad), auto (ratings when there are any).", choices=("auto", "ratings", "pairs"))
    desirable_weight: float = opt(1.0, "Loss weight of good examples.", gt=0)
    undesirable_weight: float = opt(1.0, "Loss weight of bad examples.", gt=0)


def train(run):
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    cfg = run.cfg
    args = base.trl_args(KTOConfig, run, beta=cfg.beta, num_train_epochs=cfg.epochs,
                    per_device_train_batch_size=cfg.batch_size, desirable_weight=cfg.desirable_weight,
                    undesirable_weight=cfg.undesirable_weight, max_length=context_length(run.policy))
    trainer = KTOTrainer(model=run.policy, ref_model=run.reference, args=args,
                         train_dataset=Dataset.from_list(fit_rows(run.tok, run.data, args.max_length)),
                         processing_class=run.tok,
                         callbacks=run.callbacks)
    info = base.fit(trainer, run)
    good = sum(bool(r["label"]) for r in run.data)
    return trainer.model, {**info, "kto_good": good, "kto_bad": len(run.data) - good}
