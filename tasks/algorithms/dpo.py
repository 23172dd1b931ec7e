"""``dpo``: Direct Preference Optimization through TRL's ``DPOTrainer``, offline, on the labelled pairs.

The loss pushes up ``beta * (log pi/pi_ref (chosen) - log pi/pi_ref (rejected))``
with the champion as ``pi_ref``. ``loss_type`` picks TRL's variant:

- ``sigmoid``: the DPO paper's ``-log sigmoid(margin)``; with ``label_smoothing``
  ``eps > 0`` it is conservative DPO (cDPO), which assumes a share ``eps`` of the
  labels is flipped;
- ``ipo``: IPO's squared loss ``(margin/beta - 1/(2 beta))^2``, which does not
  drive the margin to infinity on deterministic preferences;
- ``robust``: the unbiased estimator under label noise ``label_smoothing``
  (Chowdhury et al., 2024);
- ``hinge``: SLiC's hinge on the margin.

Failure sign: the chosen responses' log-likelihood falling along with the
rejected ones' (``train/logps_chosen`` trending down): the policy learns the
margin by making both less likely.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.options import opt


@dataclass(frozen=True)
class Config:
    lr: float = opt(5e-5, "Peak learning rate (linear decay).", gt=0)
    beta: float = opt(0.1, "Strength of the implicit KL constraint to the champion (IPO: the regulariser tau).",
                      gt=0)
    epochs: float = opt(2.0, "Passes over the pairs.", gt=0)
    batch_size: int = opt(32, "Pairs per optimizer step.", ge=1)
    loss_type: str = opt("sigmoid", "TRL loss variant: sigmoid (DPO; cDPO with label_smoothing), ipo, robust, "
                         "hinge.", choices=("sigmoid", "ipo", "robust", "hinge"))
    label_smoothing: float = opt(0.0, "Assumed share of flipped labels: cDPO for sigmoid, the noise rate for "
                                 "robust.", ge=0, lt=0.5)


def dpo_args(run, cfg, **kwargs):
    """TRL DPOConfig for this run: shared arguments plus the DPO family's (online_dpo reuses it)."""
    from trl import DPOConfig

    from tasks.algorithms.base import trl_args
    from tasks.rollout import context_length

    return trl_args(DPOConfig, run, beta=cfg.beta, loss_type=[cfg.loss_type], label_smoothing=cfg.label_smoothing,
                    per_device_train_batch_size=cfg.batch_size, max_length=context_length(run.policy),
                    truncation_mode="keep_end", **kwargs)


def train(run):
    from datasets import Dataset
    from trl import DPOTrainer

    from tasks.algorithms.base import fit

    args = dpo_args(run, run.cfg, num_train_epochs=run.cfg.epochs)
    trainer = DPOTrainer(model=run.policy, ref_model=run.reference, args=args,
                         train_dataset=Dataset.from_list(run.data), processing_class=run.tok,
                         callbacks=run.callbacks)
    info = fit(trainer, run)
    return trainer.model, {**info, "pairs": len(run.data)}
