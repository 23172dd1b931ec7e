"""``dpo``: Direct Preference Optimization through TRL's ``DPOTrainer``, offline, on the labelled pairs.

The loss pushes up ``beta * (log pi/pi_ref (chosen) - log pi/pi_ref (rejected))``
with the champion as ``pi_ref``. ``loss_type`` picks TRL's variant:

- ``sigmoid``: the DPO paper's ``-log sigmoid(margin)``; with ``label_smoothing``
  ``eps > 0`` it is conservative DPO (cDPO), which assumes a share ``eps`` of the
  labels is flipped: ``-(1-eps) log sigmoid(margin) - eps log sigmoid(-margin)``.
  TRL's ``sigmoid`` ignores ``label_smoothing``, so cDPO is passed to TRL as a
  weighted sum of its ``sigmoid`` and ``robust`` losses (``cdpo_weights``);
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

from tasks.algorithms import base
from tasks.errors import ConfigError
from tasks.options import opt
from tasks.rollout import context_length, fit_rows


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
                                 "robust (ipo and hinge refuse it).", ge=0, lt=0.5)

    def __post_init__(self):
        check_label_smoothing(self.loss_type, self.label_smoothing)


# The loss types that read label_smoothing: sigmoid through cdpo_weights, robust in TRL itself.
SMOOTHED = ("sigmoid", "robust")


def check_label_smoothing(loss_type: str, label_smoothing: float) -> None:
    """Refuse a label_smoothing that the loss would ignore (TRL's ipo and hinge never read it)."""

    if label_smoothing and loss_type not in SMOOTHED:
        raise ConfigError(f"label_smoothing: {label_smoothing} is read only by loss_type sigmoid (cDPO) and robust; "
                          f"{loss_type} would ignore it: set label_smoothing: 0.0 or pick sigmoid or robust")


def cdpo_weights(eps: float) -> tuple[float, float]:
    """The weights of TRL's ``sigmoid`` and ``robust`` losses whose sum is cDPO with flip rate ``eps``.

    TRL's ``sigmoid`` loss never reads ``label_smoothing``, and its DPO loss has no hook, but it sums several
    loss types with ``loss_weights``. With ``x = beta * margin`` and ``log s(-x) = log s(x) - x``:

    - sigmoid: ``-log s(x)``
    - robust:  ``(-(1 - eps) log s(x) + eps log s(-x)) / (1 - 2 eps) = -log s(x) - eps x / (1 - 2 eps)``
    - cDPO:    ``-(1 - eps) log s(x) - eps log s(-x) = -log s(x) + eps x``

    so cDPO = ``a * sigmoid + b * robust`` with ``a + b = 1`` (the ``log s`` terms) and
    ``-b * eps / (1 - 2 eps) = eps`` (the ``x`` terms): ``b = -(1 - 2 eps)``, ``a = 2 - 2 eps``.
    """
    return 2.0 - 2.0 * eps, -(1.0 - 2.0 * eps)


def dpo_loss_kwargs(loss_type: str, label_smoothing: float) -> dict:
    """TRL DPOConfig's loss arguments: ``loss_type`` as it is, or cDPO (sigmoid, label_smoothing > 0) as the
    weighted sum of :func:`cdpo_weights`."""
    if loss_type == "sigmoid" and label_smoothing:
        return dict(loss_type=["sigmoid", "robust"], loss_weights=list(cdpo_weights(label_smoothing)),
                    label_smoothing=label_smoothing)
    return dict(loss_type=[loss_type], label_smoothing=label_smoothing)


def dpo_args(run, cfg, **kwargs):
    """TRL DPOConfig for this run: shared arguments plus the DPO family's (online_dpo reuses it)."""
    from trl import DPOConfig

    return base.trl_args(DPOConfig, run, beta=cfg.beta, **dpo_loss_kwargs(cfg.loss_type, cfg.label_smoothing),
                    per_device_train_batch_size=cfg.batch_size, max_length=context_length(run.policy), **kwargs)


def train(run):
    from datasets import Dataset
    from trl import DPOTrainer

    args = dpo_args(run, run.cfg, num_train_epochs=run.cfg.epochs)
    trainer = DPOTrainer(model=run.policy, ref_model=run.reference, args=args,
                         train_dataset=Dataset.from_list(fit_rows(run.tok, run.data, args.max_length)),
                         processing_class=run.tok,
                         callbacks=run.callbacks)
    info = base.fit(trainer, run)
    return trainer.model, {**info, "pairs": len(run.data)}
