"""Training throughput of the reward and DPO stages vs the same TRL trainer called directly.

    python benchmarks/trainer.py [--repeats 2] [--which reward dpo]      (in a project after a cycle)

For each trainer, the same pairs, model and hyperparameters on both sides:

- **reward**: the stage's ``train_reward_model`` (what ``rft stage train_reward`` runs: its callbacks logging to
  an MLflow run, its scratch folder, the gather-and-save) against a ``RewardTrainer`` written here with the same
  ``RewardConfig`` values and nothing else, then ``save_pretrained``. Both start from the same pairs and end with
  the model on disk; the held-out scoring is left out of both.
- **dpo**: the optimize stage's training with ``optimize.algorithm: dpo`` (its setup, reference and judges
  loaded, TRL metrics logged to MLflow every step, the probe every ``optimize.log_every`` steps, a checkpoint
  every ``optimize.checkpoint_every`` steps) against a ``DPOTrainer`` with the same DPO settings, the same policy
  and reference, TRL's default logging and no checkpoints. Both start from the champion folder on disk.

Throughput is training samples (pairs x epochs) per second of wall time. The sides alternate, direct first,
``--repeats`` times each; the fastest run of each side counts (the least disturbed on a shared machine). The
ratios stage/direct are printed last; the target is >= 0.95 for both. ``--no-probes`` measures the DPO stage
without its probes and checkpoints, which the direct trainer does not have.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.runtime import setup_process  # noqa: E402

setup_process()                 # an entry point: offline, no telemetry, threads, before torch loads
from tasks import precision  # noqa: E402
from tasks.manifest import load_params  # noqa: E402


def reward_stage(params, train, out: Path) -> None:
    import mlflow

    from tasks.reward_training import train_reward_model
    from tasks.tracking import MetricLog

    with mlflow.start_run(run_name="bench train_reward"):
        train_reward_model(train, [], params.reward, out, MetricLog())


def reward_direct(params, train, out: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from tasks.reward_model import load_tokenizer, mean_pool_class
    from tasks.reward_training import base_path

    cfg = params.reward
    torch.manual_seed(cfg.seed)
    path = base_path(cfg)
    tok = load_tokenizer(path, cfg.max_length)
    model = (mean_pool_class().from_encoder(path) if cfg.pooling == "mean"
             else AutoModelForSequenceClassification.from_pretrained(path, num_labels=1))
    model.config.pad_token_id = tok.pad_token_id
    ds = Dataset.from_list([{"chosen_ids": tok(c, truncation=True, max_length=cfg.max_length)["input_ids"],
                             "rejected_ids": tok(r, truncation=True, max_length=cfg.max_length)["input_ids"]}
                            for c, r in train])
    with tempfile.TemporaryDirectory() as tmp:
        args = RewardConfig(output_dir=tmp, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
                            learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps, lr_scheduler_type="linear",
                            max_length=cfg.max_length, save_strategy="no", eval_strategy="no", report_to=[],
                            seed=cfg.seed, data_seed=cfg.seed, use_cpu=not torch.cuda.is_available(),
                            dataloader_num_workers=0, center_rewards_coefficient=cfg.center_rewards_coefficient,
                            **precision.of(params).trl_kwargs())     # the precision the stage uses
        RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok).train()
    model.save_pretrained(out)
    tok.save_pretrained(out)


def dpo_stage(params, out: Path) -> None:
    import mlflow
    import torch

    from tasks.optimize import fingerprint, prober, setup, train_policy
    from tasks.paths import CHECKPOINTS
    from tasks.policy import load_policy
    from tasks.tracking import MetricLog

    champion = Path(params.policy.champion_dir)
    with mlflow.start_run(run_name="bench optimize dpo"):
        torch.manual_seed(params.optimize.seed)
        model = load_policy(champion, "cpu")[0]
        s = setup(params, champion, "cpu")
        ckpt = CHECKPOINTS / ("bench-" + fingerprint(params, champion))
        shutil.rmtree(ckpt, ignore_errors=True)
        try:
            log = MetricLog()      # as the optimize stage logs
            trained, _ = train_policy(params, s, model, champion, ckpt, log, prober(s, params.optimize, log, []))
            trained.save_pretrained(out)
        finally:
            shutil.rmtree(ckpt, ignore_errors=True)


def dpo_direct(params, rows, out: Path) -> None:
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from tasks.algorithms.dpo import dpo_loss_kwargs
    from tasks.policy import load_policy
    from tasks.rollout import context_length, fit_rows

    cfg, common = params.optimize.dpo, params.optimize
    champion = Path(params.policy.champion_dir)
    torch.manual_seed(common.seed)
    model, tok = load_policy(champion, "cpu")
    ref = load_policy(champion, "cpu")[0]
    ref.requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, learning_rate=cfg.lr, seed=common.seed, report_to=[], use_cpu=True,
                         dataloader_num_workers=0, lr_scheduler_type="linear", warmup_steps=0, save_strategy="no",
                         beta=cfg.beta, **dpo_loss_kwargs(cfg.loss_type, cfg.label_smoothing),   # cDPO as the stage
                         per_device_train_batch_size=cfg.batch_size, max_length=context_length(model),
                         num_train_epochs=cfg.epochs,
                         **precision.of(params).trl_kwargs())        # the precision the stage uses
        # Prompts cut from the left as the stage cuts them (tasks/rollout.py fit_rows).
        DPOTrainer(model=model, ref_model=ref, args=args,
                   train_dataset=Dataset.from_list(fit_rows(tok, rows, args.max_length)),
                   processing_class=tok).train()
    model.save_pretrained(out)


def timed(fn, *args) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fn(*args, Path(tmp) / "out")
        return time.perf_counter() - t0


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.cpu import describe as cpu_line  # noqa: E402  (the CPU and its bf16 flags, printed first)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--which", nargs="+", default=["reward", "dpo"], choices=["reward", "dpo"])
    ap.add_argument("--no-probes", action="store_true",
                    help="dpo: optimize.log_every past the last step (the probe runs at step 0 and at the last "
                    "step only) and no checkpoints: the stage's training alone")
    a = ap.parse_args()
    print(cpu_line(), flush=True)          # the CPU and its bf16 flags (benchmarks/cpu.py)

    import mlflow

    from tasks.optimize import pair_rows
    from tasks.policy import load_policy
    from tasks.reward_training import labelled_pairs

    params = load_params(a.params)
    store = tempfile.mkdtemp(prefix="bench-trainer-")
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlruns.db")
    mlflow.set_experiment("bench-trainer")
    results = {}
    try:
        if "reward" in a.which:
            train = labelled_pairs(params)[0]       # the stage's own training pairs
            samples = len(train) * params.reward.epochs
            runs = {"direct": [], "stage": []}
            for _ in range(a.repeats):
                runs["direct"].append(timed(reward_direct, params, train))
                runs["stage"].append(timed(reward_stage, params, train))
                print(f"reward: {len(train)} pairs x {params.reward.epochs} epochs; direct "
                      f"{runs['direct'][-1]:.1f} s, stage {runs['stage'][-1]:.1f} s", flush=True)
            results["reward"] = (samples, runs)
        if "dpo" in a.which:
            quiet = {"log_every": 10**6, "checkpoint_every": 0} if a.no_probes else {}
            dpo = dataclasses.replace(params, optimize=dataclasses.replace(params.optimize, algorithm="dpo", **quiet))
            rows = pair_rows(load_policy(Path(params.policy.champion_dir), "cpu")[1], params.label.ties)
            samples = len(rows) * dpo.optimize.dpo.epochs
            runs = {"direct": [], "stage": []}
            for _ in range(a.repeats):
                runs["direct"].append(timed(dpo_direct, dpo, rows))
                runs["stage"].append(timed(dpo_stage, dpo))
                print(f"dpo: {len(rows)} pairs x {dpo.optimize.dpo.epochs} epochs; direct "
                      f"{runs['direct'][-1]:.1f} s, stage {runs['stage'][-1]:.1f} s", flush=True)
            results["dpo"] = (samples, runs)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    for name, (samples, runs) in results.items():
        direct, stage = samples / min(runs["direct"]), samples / min(runs["stage"])
        print(f"{name}: direct TRL {direct:.2f} samples/s, stage {stage:.2f} samples/s")
    for name, (samples, runs) in results.items():
        print(f"{name}_stage_over_direct={min(runs['direct']) / min(runs['stage']):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
