"""Judge ``ensemble``: several judges combined by their mean or by majority vote.

``combine: mean`` of judges that all score single responses is a scoring judge on one scale: each
member's score times its own ``scale`` (its score in logits, as its comparisons use it), averaged
(``tasks/judgemath.py::combine_scores``); a comparison is ``sigmoid(S_a - S_b)`` of these scores. Its
reward (``optimize.reward``) and its verdicts therefore agree on every pair: P(A better) > 0.5 exactly when
A scores higher. ``combine: mean`` of judges that only compare pairs is the mean of their P(A better) (it
has no score); ``majority`` is the share of members voting A.

Each member compares the same pairs; their agreement (the share of pairs on
which every member gives the same verdict) is kept in ``stats``, with every
member's own stats (position bias, for instance) under its name.
"""

from __future__ import annotations

import math

from tasks.judgemath import agreement_rate, combine_majority, combine_mean, combine_scores, score_probability
from tasks.judges.sharded import merge_stats
from tasks.judging import Judge, Verdicts


class EnsembleJudge(Judge):
    def __init__(self, name: str, cfg, members: list[Judge]):
        super().__init__()
        self.name, self.cfg, self.members = f"ai:{name}", cfg, members
        self.scores_responses = cfg.combine == "mean" and all(m.scores_responses for m in members)
        self.batch_size = math.lcm(*(m.batch_size for m in members))     # a multiple of every member's batch
        self.shardable = all(m.shardable for m in members)
        self.fields = tuple(dict.fromkeys(f for m in members for f in m.fields))
        self.compared = 0                    # comparisons so far: ``stats['agreement']`` is over all of them

    def slopes(self) -> list[float]:
        # A member's own ``scale`` (a sharded member's ``scale`` is its workers': its judge's is the inner one's).
        return [float(getattr(m, "inner", m).scale) for m in self.members]

    def score(self, prompts, responses, rows=None) -> list[float]:
        """``mean_i scale_i * s_i``: every member's score in logits, averaged (a mean ensemble of scoring judges)."""
        if not self.scores_responses:
            return super().score(prompts, responses)
        return combine_scores([m.score(prompts, responses, rows) for m in self.members], self.slopes())

    def compare(self, prompts, a, b, keys=None, rows=None) -> Verdicts:
        if self.scores_responses:
            return self._compare_scores(prompts, a, b, rows)
        probs = []
        for m in self.members:
            probs.append(m.compare(prompts, a, b, keys, rows).p_a)
            self.stats.update({f"{m.name.split(':', 1)[-1]}.{k}": v for k, v in m.stats.items()})
        self.stats = merge_stats([(self.stats, self.compared), ({"agreement": agreement_rate(probs)}, len(a))])
        self.compared += len(a)
        combined = combine_mean(probs) if self.cfg.combine == "mean" else combine_majority(probs)
        return Verdicts(combined)

    def _compare_scores(self, prompts, a, b, rows=None) -> Verdicts:
        """``sigmoid(S_a - S_b)`` of the combined scores; ``agreement`` over the members' own verdicts."""
        slopes = self.slopes()
        per_a = [m.score(prompts, a, rows) for m in self.members]
        per_b = [m.score(prompts, b, rows) for m in self.members]
        probs = [[score_probability(x, y, k) for x, y in zip(sa, sb)] for sa, sb, k in zip(per_a, per_b, slopes)]
        self.stats = merge_stats([(self.stats, self.compared), ({"agreement": agreement_rate(probs)}, len(a))])
        self.compared += len(a)
        sa, sb = combine_scores(per_a, slopes), combine_scores(per_b, slopes)
        return Verdicts([score_probability(x, y, 1.0) for x, y in zip(sa, sb)],
                        [None if x == y else x > y for x, y in zip(sa, sb)])
