"""``grpo``: Group Relative Policy Optimization through TRL's ``GRPOTrainer``.

Online: ``num_generations`` completions per training prompt, scored by the
``optimize.reward`` judges (weighted by ``optimize.reward_weights``); each
completion's advantage is its reward minus its group's mean (scaled by the
group's standard deviation unless ``scale_rewards: none``); a clipped ratio
loss with a KL penalty ``beta`` to the champion. No value model.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.algorithms.sampling import OnlineConfig, train_online
from tasks.options import opt


@dataclass(frozen=True)
class Config(OnlineConfig):
    max_steps: int = opt(60, "Optimizer steps.", ge=1)
    beta: float = opt(0.2, "KL coefficient: penalty on KL(policy || reference), the reference being the champion.",
                      ge=0)
    epsilon: float = opt(0.2, "Clip range of the policy ratio.", gt=0)
    scale_rewards: str = opt("none", "Divide advantages by the group's reward std (group), the batch's (batch) "
                             "or not at all (none; Dr. GRPO's recommendation, and on the demo the setting that "
                             "keeps the candidate's diversity).", choices=("group", "batch", "none"))
    loss_type: str = opt("dapo", "TRL's GRPO loss normalisation: grpo (per sequence), bnpo, dr_grpo or dapo "
                         "(per token over the batch).", choices=("grpo", "bnpo", "dr_grpo", "dapo"))


def train(run):
    from trl import GRPOConfig, GRPOTrainer

    return train_online(run, GRPOTrainer, GRPOConfig, epsilon=run.cfg.epsilon,
                        scale_rewards=run.cfg.scale_rewards, loss_type=run.cfg.loss_type)
