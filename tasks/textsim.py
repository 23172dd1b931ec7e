"""Text similarity of a response to its reference answer(s), each in [0, 1]: the math of the ``text_similarity``
grader (``tasks/judges/graders.py``), computed through the ``evaluate`` module ``metrics/text_similarity``.

- ``exact_match``: 1 when the response equals a reference once surrounding whitespace is stripped and inner runs
  of whitespace are one space (case folded too with ``ignore_case``), else 0.
- ``bleu``: sacreBLEU's sentence BLEU (exponential smoothing, its default tokenizer 13a) / 100.
- ``chrf``: sacreBLEU's sentence chrF (character 6-grams, beta 2) / 100.
- ``rouge1``, ``rouge2``: F1 of the unigram (bigram) overlap, clipped counts; ``rougeL``: F1 of the longest common
  subsequence. Tokens are those of the ``rouge_score`` package without stemming: the text lower-cased, every
  character but a-z and 0-9 a space, split on spaces.

With several references, BLEU and chrF read them all (their multi-reference forms); the others take the best
reference.
"""

from __future__ import annotations

import re
from collections import Counter

METRICS = ("exact_match", "bleu", "chrf", "rouge1", "rouge2", "rougeL")


def _squash(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


def exact_match(response: str, refs: list[str], ignore_case: bool = False) -> float:
    got = _squash(response, ignore_case)
    return float(any(got == _squash(r, ignore_case) for r in refs))


def rouge_tokens(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _f1(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_n(response: str, ref: str, n: int) -> float:
    def grams(tokens):
        return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    p, r = grams(rouge_tokens(response)), grams(rouge_tokens(ref))
    return _f1(sum((p & r).values()), sum(p.values()), sum(r.values()))


def lcs_length(a: list, b: list) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(response: str, ref: str) -> float:
    p, r = rouge_tokens(response), rouge_tokens(ref)
    return _f1(lcs_length(p, r), len(p), len(r))


def similarity(metric: str, response: str, refs: list[str], ignore_case: bool = False) -> float:
    """``metric`` (one of ``METRICS``) of ``response`` against its references, in [0, 1]."""
    if metric == "exact_match":
        return exact_match(response, refs, ignore_case)
    if metric == "rouge1":
        return max(rouge_n(response, r, 1) for r in refs)
    if metric == "rouge2":
        return max(rouge_n(response, r, 2) for r in refs)
    if metric == "rougeL":
        return max(rouge_l(response, r) for r in refs)
    import sacrebleu

    if metric == "bleu":
        return sacrebleu.sentence_bleu(response, refs).score / 100
    if metric == "chrf":
        return sacrebleu.sentence_chrf(response, refs).score / 100
    raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
