"""Judge ``ensemble``: several judges combined by mean probability or by majority vote.

Each member compares the same pairs; their agreement (the share of pairs on
which every member gives the same verdict) is kept in ``stats``, with every
member's own stats (position bias, for instance) under its name.
"""

from __future__ import annotations

import math

from tasks.judges.base import Judge, Verdicts
from tasks.judges.math import agreement_rate, combine_majority, combine_mean
from tasks.judges.sharded import merge_stats


class EnsembleJudge(Judge):
    def __init__(self, name: str, cfg, members: list[Judge]):
        super().__init__()
        self.name, self.cfg, self.members = f"ai:{name}", cfg, members
        self.scores_responses = cfg.combine == "mean" and all(m.scores_responses for m in members)
        self.batch_size = math.lcm(*(m.batch_size for m in members))     # a multiple of every member's batch
        self.shardable = all(m.shardable for m in members)
        self.compared = 0                    # comparisons so far: ``stats['agreement']`` is over all of them

    def score(self, prompts, responses) -> list[float]:
        # Only for best-vs-worst pair picking: the mean of the members' scores.
        per = [m.score(prompts, responses) for m in self.members]
        return [sum(s) / len(s) for s in zip(*per)]

    def compare(self, prompts, a, b, keys=None) -> Verdicts:
        probs = []
        for m in self.members:
            probs.append(m.compare(prompts, a, b, keys).p_a)
            self.stats.update({f"{m.name.split(':', 1)[-1]}.{k}": v for k, v in m.stats.items()})
        self.stats = merge_stats([(self.stats, self.compared), ({"agreement": agreement_rate(probs)}, len(a))])
        self.compared += len(a)
        combined = combine_mean(probs) if self.cfg.combine == "mean" else combine_majority(probs)
        return Verdicts(combined)
