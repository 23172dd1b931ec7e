"""Sampling from a policy with the exact token ids kept, and log-probabilities of those tokens.

``sample`` left-pads a batch of prompts and asks ``model.generate`` for ``k``
samples per prompt in one call. It keeps the sampled ids, so the KL between two
policies is measured on exactly the tokens that were sampled (re-tokenizing
decoded text can give different tokens). ``token_logprobs`` scores those
tokens under any policy, with the fp32 logits divided by the sampling temperature.

Both samplers here pass ``generate`` a generation config the project owns (``sampling_config``) and set
the checkpoint's own ``generation_config.json`` aside for the call (``project_sampling``): transformers
would otherwise fill every setting left unset from that file (a repetition penalty, top-k, min-p, n-gram
blocking), and the sampled distribution would not be the one ``token_logprobs`` scores (plain temperature
sampling, with top-k/top-p only where the caller asks for them).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from tasks.policy import resolve
from tasks.prompting import format_prompt


@dataclass
class Rollout:
    input_ids: "torch.Tensor"        # (N, P + T): left-padded prompt, then the sampled response
    attention_mask: "torch.Tensor"   # (N, P + T): 1 on prompt and response tokens up to EOS
    response_mask: "torch.Tensor"    # (N, T): 1 on response tokens up to and including the first EOS
    prompt_len: int                  # P
    texts: list[str]                 # N decoded responses
    ended: list[bool]                # N: did the response end with EOS before the length limit
    truncated: int = 0               # prompts cut from the left to fit the model's context (of the batch's)


# The logits processors a checkpoint may switch on, each at the value that switches it off.
NEUTRAL_SAMPLING = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, typical_p=1.0, epsilon_cutoff=0.0,
                        eta_cutoff=0.0, min_length=0, renormalize_logits=False)


def sampling_config(tok, *, temperature: float, max_new_tokens: int, k: int = 1, top_k: int = 0,
                    top_p: float = 1.0):
    """The complete ``transformers.GenerationConfig`` the project samples with: temperature sampling (greedy
    when ``temperature`` is 0), top-k/top-p only as asked (0 and 1.0: off), ``k`` sequences per prompt. Every
    other logits processor is set to its neutral value explicitly: a setting left None would be filled from the
    checkpoint's file, or from transformers' global defaults (top_k 50)."""
    from transformers import GenerationConfig

    sampling = (dict(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p) if temperature > 0
                else dict(do_sample=False))
    return GenerationConfig(**sampling, max_new_tokens=max_new_tokens, num_return_sequences=k, num_beams=1,
                            **NEUTRAL_SAMPLING, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)


@contextmanager
def project_sampling(model, keep_ids: bool = False):
    """Sets the checkpoint's own generation config aside while ``model.generate`` runs: transformers 5 fills
    every setting the given config leaves None (min_p, bad_words_ids, suppress_tokens, forced tokens, ...) from
    ``model.generation_config``, even when a ``generation_config`` is passed. The model keeps its own config
    afterwards (a saved policy writes it back unchanged). A LoRA-wrapped policy's inner model is the one
    ``generate`` reads it from. Not for two threads sampling from one model object at once (none does: shards
    are processes, each with its own model). ``keep_ids``: the blank config keeps the checkpoint's bos, eos and
    pad token ids (a trainer that samples inside it may read them)."""
    from transformers import GenerationConfig

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = inner.generation_config
    ids = {k: getattr(own, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")} if keep_ids else {}
    inner.generation_config = GenerationConfig(**ids)
    try:
        yield
    finally:
        inner.generation_config = own


def sample(model, tok, prompts: list, k: int, *, temperature: float, max_new_tokens: int, seed: int,
           top_k: int = 0, top_p: float = 1.0, device: str = "cpu", inference: bool = False) -> Rollout:
    """``k`` samples for each prompt (text or messages, formatted by ``format_prompt`` with the policy's
    tokenizer) in one ``generate`` call; rows are prompt-major (p0s0, p0s1, ...). ``inference``: under
    ``torch.inference_mode`` (faster; the tensors can then never enter a training step, so only for callers
    that keep the texts)."""
    import torch

    formatted = [format_prompt(p, tok) for p in prompts]
    enc, truncated = encode_prompts(tok, formatted, prompt_room(model, max_new_tokens))
    enc = enc.to(device)
    config = sampling_config(tok, temperature=temperature, max_new_tokens=max_new_tokens, k=k, top_k=top_k,
                             top_p=top_p)
    torch.manual_seed(seed)
    with torch.inference_mode() if inference else torch.no_grad(), project_sampling(model):
        seqs = model.generate(**enc, generation_config=config)
    plen = enc["input_ids"].shape[1]
    new = seqs[:, plen:]
    is_eos = new == tok.eos_token_id
    ended = is_eos.any(1)
    # Response mask: positions up to and including the first EOS (all positions when none).
    first = torch.where(ended, is_eos.float().argmax(1), torch.full_like(ended, new.shape[1], dtype=torch.long))
    pos = torch.arange(new.shape[1], device=new.device).unsqueeze(0)
    response_mask = (pos <= first.unsqueeze(1)).long()
    prompt_mask = enc["attention_mask"].repeat_interleave(k, dim=0)
    texts = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return Rollout(seqs, torch.cat([prompt_mask, response_mask], 1), response_mask, plen, texts,
                   ended.tolist(), truncated)


def room_for(context: int | None, max_new_tokens: int) -> int | None:
    """How many prompt tokens fit in a ``context``-token window beside ``max_new_tokens`` (None: no known
    limit; at least 1)."""
    return max(1, context - max_new_tokens) if context else None


def prompt_room(model, max_new_tokens: int) -> int | None:
    """``room_for`` the loaded model's context."""
    return room_for(context_length(model), max_new_tokens)


def context_of(model_dir) -> int | None:
    """The context window of the policy in ``model_dir``, from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(resolve(model_dir))
    return getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None)


def encode_prompts(tok, texts: list[str], room: int | None):
    """(the left-padded batch, how many prompts were cut): a prompt longer than ``room`` tokens keeps its last
    ``room`` tokens (the end of a conversation, where the request is). A batch that fits is encoded exactly as
    without a limit."""
    lengths = [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    over = sum(n > room for n in lengths) if room is not None else 0
    if not over:
        return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False), 0
    side = tok.truncation_side
    tok.truncation_side = "left"
    try:
        return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True,
                   max_length=room), over
    finally:
        tok.truncation_side = side


def fit_prompt(tok, prompt: str, completions: list[str], max_length: int | None) -> str:
    """``prompt`` (rendered text) cut from the left so that it and each of ``completions`` (with EOS) fit
    ``max_length`` tokens, tokenized as TRL's trainers tokenize a row (``tok(prompt + completion + eos)``):
    the completion and its EOS are what a training row teaches, so they are kept whole, and the prompt keeps
    its end, as generation keeps it (``encode_prompts``). A row that fits is unchanged, and so is a row that
    would not fit even with one prompt token left: cutting its context away would not save its completion's
    tail, so it is left whole to the trainer's right truncation."""
    eos = tok.eos_token or ""

    def longest(text: str) -> int:
        return max(len(tok(text + c + ("" if c.endswith(eos) else eos))["input_ids"]) for c in completions)

    if max_length is None or longest(prompt) <= max_length:
        return prompt
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    keep, text = len(ids), prompt
    while keep > 1:
        over = longest(text) - max_length
        if over <= 0:
            break
        # Decoding a cut and reading it again may merge or split a token at the cut: measure again.
        keep = max(1, keep - over)
        text = tok.decode(ids[-keep:], clean_up_tokenization_spaces=False)
    return text if longest(text) <= max_length else prompt


def fit_rows(tok, rows: list[dict], max_length: int | None) -> list[dict]:
    """TRL rows (``prompt`` with ``completion``, or with ``chosen`` and ``rejected``) whose prompts are cut
    by ``fit_prompt`` to fit ``max_length`` (the policy's context) beside their completions."""
    keys = [k for k in ("completion", "chosen", "rejected") if rows and k in rows[0]]
    return [{**r, "prompt": fit_prompt(tok, r["prompt"], [r[k] for k in keys], max_length)} for r in rows]


def sample_batches(model, tok, prompts: list, k: int, *, batch_size: int, seed: int, progress: bool = False,
                   first_batch: int = 0, **kwargs):
    """Yield (rollout, seconds) for consecutive batches of ``batch_size`` prompts; batch ``b`` is
    seeded with ``seed * 100003 + first_batch + b``, so a run is reproducible for a given batch size, and a
    shard that starts at batch ``first_batch`` of the whole list samples what the whole run samples there."""
    import time

    from tqdm.auto import tqdm

    starts = range(0, len(prompts), batch_size)
    for b, start in enumerate(tqdm(starts, desc="generate", unit="batch", disable=not progress, leave=False)):
        t0 = time.perf_counter()
        r = sample(model, tok, prompts[start:start + batch_size], k, seed=seed * 100_003 + first_batch + b, **kwargs)
        yield r, time.perf_counter() - t0


def token_logprobs(model, rollout: Rollout, temperature: float = 1.0):
    """log pi(y_t | x, y_<t) of each response token, shape (N, T); zero where the mask is 0."""
    import torch

    mask = rollout.attention_mask
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=rollout.input_ids, attention_mask=mask, position_ids=position_ids).logits
    # Cast first, then divide, as generate does: a bf16 quotient would be rounded again (PPO's new log-probs,
    # ppo.forward, cast first too, so old and new agree at step 0).
    logits = logits[:, rollout.prompt_len - 1:-1].float() / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, rollout.input_ids[:, rollout.prompt_len:].unsqueeze(-1))
    return logp.squeeze(-1) * rollout.response_mask


def context_length(model) -> int | None:
    """The model's context window from its config (GPT-2's n_positions, or max_position_embeddings)."""
    c = model.config
    return getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None)


def complete(model, tok, prompts: list, *, max_new_tokens: int, temperature: float, seed: int,
             batch_size: int = 16) -> list[str]:
    """One completion per prompt (text or messages), prompts cut from the left to leave ``max_new_tokens``
    inside the model's context (the end of a long conversation, where the request is, survives);
    ``temperature`` 0 is greedy."""
    import torch

    room = prompt_room(model, max_new_tokens)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        enc, _ = encode_prompts(tok, [format_prompt(p, tok) for p in prompts[start:start + batch_size]], room)
        enc = enc.to(model.device)
        torch.manual_seed(seed * 100_003 + start)
        with torch.no_grad(), project_sampling(model):
            seqs = model.generate(**enc, generation_config=sampling_config(tok, temperature=temperature,
                                                                           max_new_tokens=max_new_tokens))
        out += [t.strip() for t in tok.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
    return out


def text_nll(model, tok, texts: list[str], *, batch_size: int = 32, device: str = "cpu") -> list[float]:
    """Each text's mean negative log-likelihood per token under ``model`` (nats): the tokens after the first,
    each predicted from those before it, texts cut to the model's context from the right. A text of one token
    has nothing to predict and scores 0."""
    import torch

    n_pos = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    out: list[float] = []
    was_training = model.training
    model.eval()
    sides = tok.padding_side, tok.truncation_side
    tok.padding_side, tok.truncation_side = "right", "right"
    try:
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=bool(n_pos),
                          max_length=n_pos).to(device)
                logits = model(**enc).logits[:, :-1]
                target, mask = enc["input_ids"][:, 1:], enc["attention_mask"][:, 1:].float()
                # cross_entropy in fp32 without a second (batch, length, vocab) tensor of log-probabilities
                nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), target, reduction="none")
                per = (nll * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out += [float(x) for x in per]
    finally:
        tok.padding_side, tok.truncation_side = sides
        if was_training:
            model.train()
    return out
