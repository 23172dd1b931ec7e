"""Sampling from a policy with the exact token ids kept, and log-probabilities of those tokens.

``sample`` left-pads a batch of prompts and asks ``model.generate`` for ``k``
samples per prompt in one call. It keeps the sampled ids, so the KL between two
policies is measured on exactly the tokens that were sampled (re-tokenizing
decoded text can give different tokens). ``token_logprobs`` scores those
tokens under any policy, with logits divided by the sampling temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    torch.manual_seed(seed)
    with torch.inference_mode() if inference else torch.no_grad():
        seqs = model.generate(**enc, do_sample=True, temperature=temperature, top_k=top_k or None, top_p=top_p,
                              max_new_tokens=max_new_tokens, num_return_sequences=k,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
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

    from tasks.policy import resolve

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
    logits = logits[:, rollout.prompt_len - 1:-1] / temperature
    logp = torch.log_softmax(logits.float(), -1).gather(-1, rollout.input_ids[:, rollout.prompt_len:].unsqueeze(-1))
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
        sampling = dict(do_sample=True, temperature=temperature) if temperature > 0 else dict(do_sample=False)
        with torch.no_grad():
            seqs = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id, **sampling)
        out += [t.strip() for t in tok.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
    return out
