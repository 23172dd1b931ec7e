"""Judge ``llm``: a local Hugging Face causal LM, prompted with the rubric and the pair.

It decides by the log-probabilities of the two choice tokens, never by parsing
generated text: the judge's question (``tasks/judges/pairwise.py``) is formatted
with the model's chat template when it has one (the project's simple template
otherwise), and P(A) is the softmax over the next-token logits of ``A`` and
``B`` (the first token of each letter, with and without a leading space, the
likelier spelling kept). Batched, left-padded, truncated from the left so the
question at the end survives ``max_length``.
"""

from __future__ import annotations

from tasks import rollout
from tasks.errors import ConfigError
from tasks.judgemath import two_choice_probability
from tasks.judges.pairwise import CHOICES, PairwiseJudge, judge_messages
from tasks.policy import pick_device, resolve
from tasks.prompting import format_prompt


def choice_token_ids(tok, letter: str) -> list[int]:
    """Token ids that can spell ``letter`` as the next token: ``"A"`` and ``" A"``, first token of each."""
    ids = []
    for text in (letter, " " + letter):
        enc = tok(text, add_special_tokens=False)["input_ids"]
        if enc and enc[0] not in ids:
            ids.append(enc[0])
    return ids


class LLMJudge(PairwiseJudge):
    def __init__(self, name: str, cfg, rubric):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(name, rubric)
        self.cfg, self.batch_size = cfg, cfg.batch_size
        src = resolve(cfg.model)
        try:
            self.tok = AutoTokenizer.from_pretrained(src)
            self.device = pick_device(cfg.device, f"judges.{name}.device")
            # On a CPU in fp32, whatever the checkpoint's dtype: a bf16 checkpoint runs 9-17x slower on a CPU
            # without native bf16 (docs/performance.md); on a GPU, as stored.
            dtype = "auto" if self.device.startswith("cuda") else torch.float32
            self.model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"judges.{name}.model: cannot load a causal LM from {cfg.model!r}: "
                              f"{str(exc).splitlines()[0]}") from None
        self.tok.padding_side, self.tok.truncation_side = "left", "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.ids = {c: choice_token_ids(self.tok, c) for c in CHOICES}

    def p_first(self, prompts, first, second) -> list[float]:
        import torch

        texts = [format_prompt(judge_messages(self.rubric, p, x, y), self.tok)
                 for p, x, y in zip(prompts, first, second)]
        n_pos = getattr(self.model.config, "n_positions", None) or getattr(self.model.config,
                                                                           "max_position_embeddings", None)
        max_len = min(self.cfg.max_length, n_pos) if n_pos else self.cfg.max_length
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.cfg.batch_size):
                enc = self.tok(texts[i:i + self.cfg.batch_size], return_tensors="pt", padding=True,
                               truncation=True, max_length=max_len).to(self.device)
                position_ids = (enc["attention_mask"].cumsum(1) - 1).clamp(min=0)
                logits = self.model(**enc, position_ids=position_ids).logits[:, -1].float()
                logp = torch.log_softmax(logits, -1)
                # The likelier spelling of each letter ("A" or " A") stands for it.
                la = logp[:, self.ids["A"]].max(-1).values
                lb = logp[:, self.ids["B"]].max(-1).values
                out += [two_choice_probability(float(x), float(y)) for x, y in zip(la, lb)]
        return out

    def generate(self, prompts: list, *, max_new_tokens: int, temperature: float, seed: int = 0) -> list[str]:
        """The model's reply to each conversation (Constitutional AI's critiques and revisions)."""

        return rollout.complete(self.model, self.tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                        seed=seed)
