"""The judge interface: compare (prompt, response A, response B) batches; optionally score single responses.

Every judge returns :class:`Verdicts`: its probability that A is better and its
decision (``None`` for a tie). A *scoring* judge (reward model, embedding,
simulated annotator) also scores single responses, which is what
``label.pairs: best_vs_worst`` needs to pick the pair. A judge that shows both
responses in one prompt (``llm``, ``http``) asks twice with the positions
swapped and keeps how often the two orders disagree in ``stats``. A judge's
``stats`` cover every call it made: a stage may judge its list in several calls.

``rows`` gives, per item, the prompt's row of the prompts file (``id``, the prompt, and the reference fields a
grader reads: ``reference``, ``tests``, ...). A judge that reads such fields lists them in ``fields``; the
stages that judge held-out or training prompts pass the rows, and a grader called without them where it needs
a field raises a ConfigError naming the field (``tasks/judges/graders.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from tasks.judgemath import decision, score_probability
from tasks.prompting import Prompt


@dataclass
class Verdicts:
    p_a: list[float]                      # the judge's probability that A is better, per comparison
    a_wins: list[bool | None] = field(default_factory=list)   # its decision; None for a tie
    # A judge that asks in both orders: per comparison, the share of its two asks that preferred the position
    # shown first (``tasks/judgemath.py::first_preference``); None for other judges.
    first: list[float] | None = None

    def __post_init__(self):
        if not self.a_wins:
            self.a_wins = [decision(p) for p in self.p_a]


class Judge(ABC):
    """Base class. ``name`` is the labeler id written into labels (``ai:<name>`` or ``human:<id>``)."""

    name: str = "ai:judge"
    scores_responses: bool = False
    batch_size: int = 1        # its own batch: sharding cuts its lists at multiples of it (tasks/judges/sharded.py)
    shardable: bool = True     # whether copies of it may judge shards of a list on other workers
    fields: tuple[str, ...] = ()   # the prompt rows' fields it reads (reference answers, tests)
    pass_threshold: float | None = None   # a grader's: a response passes when its score is at least this

    def __init__(self):
        self.stats: dict[str, float] = {}

    def score(self, prompts: list[Prompt], responses: list[str], rows: list[dict] | None = None) -> list[float]:
        raise TypeError(f"judge {self.name} compares pairs; it does not score single responses")

    @abstractmethod
    def compare(self, prompts: list[Prompt], a: list[str], b: list[str], keys: list | None = None,
                rows: list[dict] | None = None) -> Verdicts:
        """Verdicts on A vs B for each comparison; ``keys`` identify comparisons for judges that draw."""


class ScoringJudge(Judge):
    """A judge that scores each response on its own; a comparison is ``sigmoid(scale * (s_a - s_b))``."""

    scores_responses = True
    scale: float = 1.0

    def compare(self, prompts, a, b, keys=None, rows=None) -> Verdicts:
        return self.compare_scored(prompts, a, b, self.score(prompts, a, rows), self.score(prompts, b, rows), keys)

    def compare_scored(self, prompts, a, b, sa: list[float], sb: list[float], keys=None) -> Verdicts:
        """Verdicts from scores already computed (labelling scores every response once, to pick pairs)."""
        return Verdicts([score_probability(x, y, self.scale) for x, y in zip(sa, sb)],
                        [None if x == y else x > y for x, y in zip(sa, sb)])
