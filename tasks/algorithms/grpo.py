"""``grpo``: Group Relative Policy Optimization through TRL's ``GRPOTrainer``, and the loss family TRL builds on it.

Online: ``num_generations`` completions per training prompt, scored by the
``optimize.reward`` judges (weighted by ``optimize.reward_weights``); each
completion's advantage is its reward minus its group's mean (scaled by the
group's standard deviation unless ``scale_rewards: none``); a clipped ratio
loss with a KL penalty ``beta`` to the champion. No value model.

``loss_type`` picks the member of the family (GRPO, BNPO, Dr. GRPO, DAPO, CISPO, SAPO, LUSPO, VESPO) and
``importance_sampling_level: sequence`` turns GRPO into GSPO. The combinations TRL only warns about are
refused on load, naming the keys (:func:`check`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.algorithms.sampling import OnlineConfig, train_online
from tasks.errors import ConfigError
from tasks.options import opt

# TRL 1.16's loss types (trl.GRPOConfig.loss_type; tests/test_grpo_family.py checks the installed TRL names them).
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo")
# Losses that sum per-token terms: with sequence-level ratios each sequence is weighted by its length.
TOKEN_SUM_LOSSES = ("bnpo", "dr_grpo", "dapo", "cispo")


@dataclass(frozen=True)
class Config(OnlineConfig):
    max_steps: int = opt(60, "Optimizer steps.", ge=1)
    beta: float = opt(0.2, "KL coefficient: penalty on KL(policy || reference), the reference being the champion.",
                      ge=0)
    epsilon: float = opt(0.2, "Clip range of the policy ratio: the ratio is clipped to [1 - epsilon, "
                         "1 + epsilon_high].", gt=0)
    epsilon_high: float | None = opt(None, "Upper clip of the ratio (DAPO's clip-higher; the paper uses 0.28); "
                                     "null: epsilon. With loss_type cispo: the cap on the importance weight "
                                     "(CISPO's epsilon_max).", gt=0)
    delta: float | None = opt(None, "Two-sided GRPO (INTELLECT-2): also clip the ratio of negative-advantage "
                              "tokens at this upper bound, greater than 1 + epsilon; null: standard clipping.", gt=1)
    scale_rewards: str = opt("none", "Divide advantages by the group's reward std (group), the batch's (batch) "
                             "or not at all (none; Dr. GRPO's recommendation, and on the demo the setting that "
                             "keeps the candidate's diversity).", choices=("group", "batch", "none"))
    loss_type: str = opt("dapo", "The loss: grpo (each sequence's token mean, then the batch mean; biased "
                         "towards short answers), bnpo (token mean over the local batch), dr_grpo (token sum "
                         "over a constant, Dr. GRPO), dapo (token mean over the whole batch, DAPO), cispo "
                         "(clipped importance weights, gradients through every token, ScaleRL/MiniMax-M1), sapo "
                         "(a soft, temperature-controlled gate instead of the hard clip, SAPO), luspo "
                         "(length-unbiased sequence loss, with importance_sampling_level sequence) or vespo "
                         "(variance-reduced sequence weights computed from token ratios).",
                         choices=LOSS_TYPES)
    importance_sampling_level: str = opt("token", "Ratios per token (token), or one per sequence from the mean "
                                         "log-ratio of its tokens (sequence: GSPO, with loss_type grpo; luspo "
                                         "needs it).", choices=("token", "sequence"))
    mask_truncated_completions: bool = opt(False, "Leave completions cut at max_completion_length out of the loss "
                                           "(DAPO's overlong filtering), so an unfinished answer is not "
                                           "penalised as a wrong one.")
    top_entropy_quantile: float = opt(1.0, "Keep in the policy loss only the tokens whose entropy is in this top "
                                      "quantile (Beyond the 80/20 rule: 0.2); 1.0 keeps every token.", ge=0, le=1)
    sapo_temperature_pos: float = opt(1.0, "loss_type sapo: the gate's temperature for positive advantages.", gt=0)
    sapo_temperature_neg: float = opt(1.05, "loss_type sapo: the gate's temperature for the others.", gt=0)
    multi_objective_aggregation: str = opt("sum_then_normalize", "With several rewards (optimize.reward): "
                                           "sum_then_normalize weighs and sums them, then scales the sum as "
                                           "scale_rewards says; normalize_then_sum standardises each reward within "
                                           "its group first, so that a reward with a wide range does not drown "
                                           "the others (GDPO), sums them with their weights, and standardises the "
                                           "sum over the batch (scale_rewards is then not used).",
                                           choices=("sum_then_normalize", "normalize_then_sum"))

    def __post_init__(self):
        super().__post_init__()
        check(self)


def check(cfg: Config) -> None:
    """The cross-field rules, each a ConfigError naming the keys (``optimize.grpo.<key>``)."""
    key = "optimize.grpo"
    if cfg.epsilon_high is not None and cfg.loss_type != "cispo" and cfg.epsilon_high < cfg.epsilon:
        raise ConfigError(f"{key}.epsilon_high: {cfg.epsilon_high} is below epsilon ({cfg.epsilon}); the upper "
                          "clip must be at least the lower one (null: the same)")
    if cfg.loss_type == "cispo" and cfg.epsilon_high is None:
        raise ConfigError(f"{key}.epsilon_high: loss_type cispo caps the importance weight at epsilon_high "
                          "(CISPO's epsilon_max); set it (ScaleRL uses 4.0)")
    if cfg.delta is not None and cfg.delta <= 1 + cfg.epsilon:
        raise ConfigError(f"{key}.delta: {cfg.delta} must be greater than 1 + epsilon ({1 + cfg.epsilon}), or the "
                          "two-sided clip cuts inside the standard one")
    if cfg.importance_sampling_level == "sequence" and cfg.loss_type in TOKEN_SUM_LOSSES:
        raise ConfigError(f"{key}.importance_sampling_level: sequence with loss_type {cfg.loss_type} weights each "
                          "sequence by its length instead of optimizing the per-sequence objective; GSPO is "
                          "loss_type grpo (or luspo)")
    if cfg.loss_type == "luspo" and cfg.importance_sampling_level != "sequence":
        raise ConfigError(f"{key}.importance_sampling_level: loss_type luspo is a sequence-level loss; set "
                          "sequence")
    if cfg.loss_type == "vespo" and cfg.importance_sampling_level != "token":
        raise ConfigError(f"{key}.importance_sampling_level: loss_type vespo computes its sequence weights from "
                          "the token ratios itself; set token")
    defaults = Config.__dataclass_fields__
    if cfg.loss_type != "sapo":
        for name in ("sapo_temperature_pos", "sapo_temperature_neg"):
            if getattr(cfg, name) != defaults[name].default:
                raise ConfigError(f"{key}.{name}: read only by loss_type sapo (loss_type is {cfg.loss_type})")


def trl_kwargs(cfg: Config) -> dict:
    """The loss settings in the names of TRL's ``GRPOConfig``."""
    return dict(epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high, delta=cfg.delta, scale_rewards=cfg.scale_rewards,
                loss_type=cfg.loss_type, importance_sampling_level=cfg.importance_sampling_level,
                mask_truncated_completions=cfg.mask_truncated_completions,
                top_entropy_quantile=cfg.top_entropy_quantile, sapo_temperature_pos=cfg.sapo_temperature_pos,
                sapo_temperature_neg=cfg.sapo_temperature_neg,
                multi_objective_aggregation=cfg.multi_objective_aggregation)


def train(run):
    from trl import GRPOConfig, GRPOTrainer

    return train_online(run, GRPOTrainer, GRPOConfig, **trl_kwargs(run.cfg))
