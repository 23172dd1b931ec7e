"""Judge ``reward_model``: a trained reward-model folder (this cycle's, the champion's, a gold one, any path).

Its score is the Bradley-Terry reward of ``prompt + response``; a comparison is
``sigmoid(s_a - s_b)``, the probability the Bradley-Terry model itself assigns.
Naming a second reward model, trained on a disjoint share of human pairs, as
an evaluation judge is the proxy-vs-gold check of reward over-optimization
(Gao et al., 2022).
"""

from __future__ import annotations

from tasks.judging import ScoringJudge
from tasks.reward_model import RewardModel, trained_max_length


class RewardModelJudge(ScoringJudge):
    scale = 1.0

    def __init__(self, name: str, cfg, rubric=None):
        super().__init__()
        self.name, self.batch_size = f"ai:{name}", cfg.batch_size
        self.model = RewardModel(cfg.path, cfg.max_length or trained_max_length(cfg.path), cfg.batch_size)

    def score(self, prompts, responses, rows=None) -> list[float]:
        return self.model.score_responses(prompts, responses)
