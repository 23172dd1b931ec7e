"""Grader ``score_model``: an ``llm`` or ``http`` judge's model asked for a score of one response (pointwise).

The question (``score_messages``) shows the rubric, the conversation, the response and, with ``reference``, the
prompt row's reference answer, and asks for a number from ``min_score`` to ``max_score`` (or one of
``labels``). The answer is generated ``samples`` times (seed ``seed + i``, at ``temperature``) through the
named judge's ``generate``: a local model batched on its device, or the server's chat completions, run
``concurrency`` at a time with that judge's deadlines, retries and circuit breaker (``tasks/judges/http.py``).

``parse_score`` reads an answer: its first number (a label: its first word that is a label, case-folded). An
answer with none, or a number outside the range, is *unparsed*: it counts in ``stats['unparsed']`` and scores
``unparsed_score``. A response's score is the mean over its samples of ``(x - min_score) / (max_score -
min_score)``, in [0, 1].
"""

from __future__ import annotations

import re

from tasks.judges.graders import Grader, reference_values
from tasks.prompting import as_messages, simple_template

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_score(text: str, low: float, high: float, labels: dict | None = None) -> float | None:
    """The score an answer gives, in [low, high], or None when it gives none (see the module docstring)."""
    if labels:
        folded = {str(k).casefold(): float(v) for k, v in labels.items()}
        for word in re.findall(r"[^\W_]+(?:[-_][^\W_]+)*", text):
            if word.casefold() in folded:
                return folded[word.casefold()]
        return None
    m = NUMBER.search(text)
    if m is None:
        return None
    x = float(m.group(0))
    return x if low <= x <= high else None


def score_messages(rubric_text: str, prompt, response: str, low: float, high: float, labels: dict | None,
                   reference: str | None = None) -> list[dict]:
    convo = simple_template(as_messages(prompt))[:-len("\nA:")]
    ask = (f"Answer with one word: {' or '.join(map(str, labels))}." if labels else
           f"Answer with the number only, from {low:g} (worst) to {high:g} (best).")
    text = ("You grade one response to a conversation by the criteria.\n"
            f"Criteria:\n{rubric_text}\n\n"
            f"Conversation:\n{convo}\n\n"
            f"Response:\n{response}\n\n"
            + (f"Reference answer:\n{reference}\n\n" if reference is not None else "")
            + f"How well does the response meet the criteria? {ask}")
    return [{"role": "user", "content": text}]


class ScoreModelGrader(Grader):
    def __init__(self, name: str, cfg, model_judge, rubric):
        super().__init__(name, cfg)
        self.model, self.rubric = model_judge, rubric
        self.fields = (cfg.reference,) if cfg.reference else ()
        self.batch_size = getattr(model_judge, "batch_size", 1)
        self.stats.update(samples=0.0, unparsed=0.0)

    def grade(self, prompts, responses, rows):
        cfg = self.cfg
        refs = (["\n".join(v) for v in reference_values(rows, len(responses), cfg.reference, self.key)]
                if cfg.reference else [None] * len(responses))
        asks = [score_messages(self.rubric.as_text(), p, r, cfg.min_score, cfg.max_score, cfg.labels, ref)
                for p, r, ref in zip(prompts, responses, refs)]
        totals = [0.0] * len(responses)
        span = cfg.max_score - cfg.min_score
        for i in range(cfg.samples):
            answers = self.model.generate(asks, max_new_tokens=cfg.max_tokens, temperature=cfg.temperature,
                                          seed=cfg.seed + i) if asks else []
            for j, answer in enumerate(answers):
                x = parse_score(answer, cfg.min_score, cfg.max_score, cfg.labels)
                if x is None:
                    self.stats["unparsed"] += 1
                    totals[j] += cfg.unparsed_score
                else:
                    totals[j] += (x - cfg.min_score) / span
            self.stats["samples"] += len(answers)
        if "retries" in self.model.stats:           # the http judge's retries, over all its calls
            self.stats["retries"] = self.model.stats["retries"]
        return [t / cfg.samples for t in totals]
