"""Judges that read both responses in one prompt (``llm``, ``http``): the prompt, and the position swap.

The judge is asked twice, A shown first and then B shown first, and the two
answers are averaged (``tasks/judgemath.py::swap_average``); the share of
comparisons whose verdict flips with the order is the judge's position flip
rate, kept in ``stats['position_disagreement']`` over all of the judge's calls. It has no direction; the
verdicts also carry, per comparison, the share of the two asks that preferred the position shown first
(``Verdicts.first``), from which the label-quality report gives the directional bias.
"""

from __future__ import annotations

from abc import abstractmethod

from tasks.judgemath import first_preference, swap_average
from tasks.judges.sharded import merge_stats
from tasks.judging import Judge, Verdicts
from tasks.prompting import as_messages, simple_template

CHOICES = ("A", "B")


def judge_messages(rubric, prompt, first: str, second: str) -> list[dict]:
    """The judge's question as one user message: rubric, conversation, both responses, answer with A or B."""
    convo = simple_template(as_messages(prompt))[:-len("\nA:")]
    text = (
        "You compare two responses to the same conversation and pick the better one.\n"
        f"Criteria:\n{rubric.as_text()}\n\n"
        f"Conversation:\n{convo}\n\n"
        f"Response A:\n{first}\n\n"
        f"Response B:\n{second}\n\n"
        "Which response is better by the criteria? Answer with a single letter, A or B."
    )
    return [{"role": "user", "content": text}]


class PairwiseJudge(Judge):
    """Subclasses implement ``p_first(prompts, first, second)``: P(the response shown first is better)."""

    def __init__(self, name: str, rubric):
        super().__init__()
        self.name, self.rubric = f"ai:{name}", rubric

    @abstractmethod
    def p_first(self, prompts, first, second) -> list[float]:
        """P(the response shown first is better), for each comparison."""

    def compare(self, prompts, a, b, keys=None, rows=None) -> Verdicts:
        ab = self.p_first(prompts, a, b)
        ba = self.p_first(prompts, b, a)
        out = [swap_average(x, y) for x, y in zip(ab, ba)]
        # Over every comparison this judge made (a stage may compare its pairs in several calls).

        this = {"position_disagreement": sum(d for _, d in out) / max(1, len(out)), "comparisons": float(len(out))}
        self.stats = merge_stats([(self.stats, self.stats.get("comparisons", 0.0)), (this, len(out))])
        return Verdicts([p for p, _ in out], first=[first_preference(x, y) for x, y in zip(ab, ba)])
