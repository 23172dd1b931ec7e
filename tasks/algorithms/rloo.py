"""``rloo``: REINFORCE Leave-One-Out through TRL's ``RLOOTrainer``.

Online, like GRPO, but each completion's baseline is the mean reward of the
*other* ``num_generations - 1`` completions of its prompt (Ahmadian et al.,
2024), an unbiased baseline with no value model. The KL to the champion is
folded into the reward with coefficient ``beta``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.algorithms.sampling import OnlineConfig, train_online
from tasks.options import opt


@dataclass(frozen=True)
class Config(OnlineConfig):
    max_steps: int = opt(60, "Optimizer steps.", ge=1)
    beta: float = opt(0.2, "KL coefficient: KL(policy || champion) subtracted from the reward.", ge=0)
    normalize_advantages: bool = opt(False, "Whiten the advantages of each generation batch.")


def train(run):
    from trl import RLOOConfig, RLOOTrainer

    return train_online(run, RLOOTrainer, RLOOConfig, normalize_advantages=run.cfg.normalize_advantages)
