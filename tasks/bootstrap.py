"""The logic of stages ``corpus`` and ``bootstrap`` (``tasks/stages/``): the environment writes its corpus, then
the base policy is trained from it.

``corpus`` asks the environment (``task.env``) for its corpus and writes it to
``data/corpus/``: the demo generates its texts, demonstrations and prompts; a
user's task (``none``) copies the files that ``corpus.texts`` and
``corpus.demos`` name, if any.

``bootstrap`` trains a byte-level BPE tokenizer, pretrains a tiny GPT-2-style
causal LM on the unannotated texts, finetunes it on the demonstrations (loss on
the response tokens only), saves it in Hugging Face format to ``models/base``,
logs both learning curves, and registers it in MLflow as a new version of
``policy`` with alias ``champion``. When ``policy.base_model`` names an
existing model, no training happens: ``models/base`` records a pointer to it.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from tasks import tracking
from tasks.config import Params
from tasks.io import read_jsonl
from tasks.paths import CORPUS as CORPUS_DIR
from tasks.policy import tiny_gpt, train_tokenizer
from tasks.precision import Scaler, autocast, fp32
from tasks.prompting import completion_text, format_prompt, join_completion, prompt_of


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup to ``peak``, then cosine decay to 10% of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _train_loop(model, batches, steps: int, cfg, tag: str, log, mixed=None) -> list[float]:
    """AdamW on fp32 master weights; the forward pass in ``mixed``'s autocast (``tasks/precision.py``; None: fp32)."""
    import torch
    from tqdm.auto import tqdm

    mixed = mixed or fp32()
    scaler = Scaler(mixed, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01, betas=(0.9, 0.95))
    model.train()
    losses, window = [], []
    bar = tqdm(range(steps), desc=f"bootstrap {tag}", unit="step", leave=False)     # "bootstrap pretrain"
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, cfg.lr, cfg.warmup_steps)
        input_ids, attention_mask, labels = batches(step)
        with autocast(mixed, "cpu"):
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        scaler.backward(loss)
        scaler.step(opt, model.parameters(), 1.0)
        window.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step == steps - 1:
            mean = sum(window) / len(window)
            losses.append(mean)
            log(f"{tag}_loss", mean, step + 1)
            bar.set_postfix(loss=f"{mean:.3f}")
            window = []
    model.eval()
    return losses


def _pretrain_batches(ids: list[int], block: int, batch_size: int, seed: int):
    import torch

    data = torch.tensor(ids, dtype=torch.long)
    n_blocks = (len(data) - 1) // block
    gen = torch.Generator().manual_seed(seed)

    def batch(_step):
        starts = torch.randint(0, len(data) - block - 1, (batch_size,), generator=gen)
        x = torch.stack([data[s:s + block] for s in starts])
        return x, torch.ones_like(x), x.clone()

    return batch, n_blocks


def _sft_examples(tok, demos: list[dict], max_len: int) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per demonstration; the loss covers the response and EOS only. Past
    ``max_len``, the prompt is cut from the left (as generation cuts it) so the response and its EOS stay whole;
    a response that leaves no room for one prompt token keeps the prompt's last token and is cut from the right,
    so every example still teaches some response tokens."""
    out = []
    for d in demos:
        text = format_prompt(prompt_of(d), tok)
        p = tok(text)["input_ids"]
        r = tok(completion_text(text, d["response"]))["input_ids"] + [tok.eos_token_id]
        room = max(1, max_len - len(r))
        if len(p) > room:
            p = p[-room:]
        out.append(((p + r)[:max_len], len(p)))
    return out


def _sft_batches(examples, batch_size: int, pad_id: int, seed: int):
    import torch

    rng = random.Random(seed)

    def batch(_step):
        chosen = rng.sample(examples, min(batch_size, len(examples)))
        width = max(len(ids) for ids, _ in chosen)
        x = torch.full((len(chosen), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        labels = torch.full_like(x, -100)
        for i, (ids, plen) in enumerate(chosen):
            x[i, :len(ids)] = torch.tensor(ids)
            mask[i, :len(ids)] = 1
            labels[i, plen:len(ids)] = torch.tensor(ids[plen:])
        return x, mask, labels

    return batch


def _sft_eval_loss(model, examples, pad_id: int) -> float:
    import torch

    batch = _sft_batches(examples, len(examples), pad_id, 0)
    with torch.no_grad():
        x, m, y = batch(0)
        return model(input_ids=x, attention_mask=m, labels=y).loss.item()


def example_prompt():
    """The MLflow model's input example: the first demonstration's prompt (None: no demonstrations)."""
    demos = CORPUS_DIR / "demos.jsonl"
    rows = read_jsonl(demos) if demos.exists() else []
    return prompt_of(rows[0]) if rows else None


def train_base(params: Params, out: Path, log) -> dict:
    import torch

    cfg = params.bootstrap
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    texts = [r["text"] for r in read_jsonl(CORPUS_DIR / "texts.jsonl")]
    demos = read_jsonl(CORPUS_DIR / "demos.jsonl")
    tok_texts = texts + [join_completion(format_prompt(prompt_of(d)), d["response"]) for d in demos]
    tok = train_tokenizer(tok_texts, cfg.vocab_size)
    model = tiny_gpt(len(tok), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions, tok.eos_token_id)
    n_params = sum(p.numel() for p in model.parameters())
    log("n_params", n_params, 0)

    t0 = time.perf_counter()
    ids: list[int] = []
    for text in texts:
        ids += tok(text)["input_ids"] + [tok.eos_token_id]
    batches, _ = _pretrain_batches(ids, cfg.block_size, cfg.batch_size, cfg.seed)
    # The model trains on the CPU, in the precision train.precision gives there (recorded in the stage's run).
    mixed = tracking.record_precision(params, "cpu")
    pre = _train_loop(model, batches, cfg.pretrain_steps, cfg, "pretrain", log, mixed)

    rng = random.Random(cfg.seed)
    shuffled = demos[:]
    rng.shuffle(shuffled)
    n_val = max(1, len(shuffled) // 20)
    train_ex = _sft_examples(tok, shuffled[n_val:], cfg.n_positions)
    val_ex = _sft_examples(tok, shuffled[:n_val], cfg.n_positions)
    val_before = _sft_eval_loss(model, val_ex, tok.pad_token_id)
    sft = _train_loop(model, _sft_batches(train_ex, cfg.batch_size, tok.pad_token_id, cfg.seed),
                      cfg.sft_steps, cfg, "sft", log, mixed)
    val_after = _sft_eval_loss(model, val_ex, tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"n_params": n_params, "pretrain_loss_final": pre[-1], "sft_loss_final": sft[-1],
            "sft_val_loss_before": val_before, "sft_val_loss_after": val_after,
            "train_seconds": time.perf_counter() - t0, "trained": 1}
