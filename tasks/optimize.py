"""Stage ``optimize``: turn the champion into a candidate policy (``optimize.algorithm``).

- ``dpo``: TRL ``DPOTrainer`` on the labelled pairs (prompt, chosen, rejected),
  reference = the champion, ``beta`` from params.
- ``grpo``: TRL ``GRPOTrainer``, online: ``num_generations`` samples per
  training prompt, scored by the trained reward model (``models/reward``),
  group-normalised advantages, KL penalty ``beta`` to the reference (the champion).

Both log TRL's own metrics at every step (loss, rewards, KL, entropy, clip
ratio, completion length) to the stage's MLflow run, and every ``log_every`` steps a
**probe** that is the same for both: sample one response for each of
``probe_prompts`` training prompts from the current policy and log its mean
reward-model score, the KL to the reference on the sampled tokens, the mean
length and the EOS rate. The probe curve is also written to
``reports/optimize/curve.csv`` for ``dvc plots``.

The candidate is saved to ``models/candidate`` and registered as a new version
of ``policy`` with alias ``challenger``.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

from tasks.config import Params
from tasks.io import atomic_path, dvc_md5, read_jsonl, write_json
from tasks.labels.convert import preference_pairs
from tasks.paths import CANDIDATE as OUT
from tasks.paths import LABELS, PROMPTS, REWARD
from tasks.policy import load_policy, read_meta, write_meta
from tasks.prompting import format_prompt, prompt_of

CURVE = Path("reports/optimize/curve.csv")
REPORT = Path("reports/optimize/metrics.json")


def probe(policy, ref, tok, rm, prompts: list, temperature: float, max_new_tokens: int, seed: int) -> dict:
    """Reward, KL to the reference, length and EOS rate of one fresh sample per prompt."""
    from tasks.evalmath import mean, sequence_kl
    from tasks.rollout import sample, token_logprobs

    was_training = policy.training
    policy.eval()
    r = sample(policy, tok, prompts, 1, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
               device=next(policy.parameters()).device.type)
    kl = sequence_kl(token_logprobs(policy, r, temperature), token_logprobs(ref, r, temperature), r.response_mask)
    if was_training:
        policy.train()
    scores = rm.score_responses(prompts, r.texts)
    return {"probe_reward": mean(scores), "probe_kl": float(kl.mean()),
            "probe_length": mean([len(t.split()) for t in r.texts]), "probe_eos_rate": mean([float(e) for e in r.ended])}


def _callbacks(cfg, tok, ref, rm, probe_prompts: list, curve: list[dict], log):
    from transformers import TrainerCallback

    class Health(TrainerCallback):
        def _probe(self, model, step):
            m = probe(model, ref, tok, rm, probe_prompts, cfg.temperature, cfg.max_completion_length, cfg.seed + step)
            for k, v in m.items():
                log(k, v, step)
            curve.append({"step": step, "reward": m["probe_reward"], "kl": m["probe_kl"],
                          "length": m["probe_length"]})

        def on_train_begin(self, args, state, control, model=None, **kw):
            self._probe(model, 0)

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % cfg.log_every == 0:
                self._probe(model, state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            for k, v in (logs or {}).items():
                if isinstance(v, (int, float)):
                    log("train/" + k.replace("/", "_"), float(v), state.global_step)

    return [Health()]


def _context_length(model) -> int | None:
    """The policy's own context window, from its config (GPT-2's n_positions, or max_position_embeddings)."""
    c = model.config
    return getattr(c, "n_positions", None) or getattr(c, "max_position_embeddings", None)


def _train_dpo(cfg, model, tok, callbacks, out_tmp, ties: str):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    prompts = {str(r["id"]): prompt_of(r) for r in read_jsonl(PROMPTS)}
    rows = []
    for r in preference_pairs(read_jsonl(LABELS), ties):
        p = prompt_of(r) if ("prompt" in r or "messages" in r) else prompts[r["prompt_id"]]
        rows.append({"prompt": format_prompt(p, tok), "chosen": " " + r["chosen"], "rejected": " " + r["rejected"]})
    args = DPOConfig(output_dir=out_tmp, beta=cfg.beta, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
                     per_device_train_batch_size=cfg.batch_size, logging_steps=1, save_strategy="no",
                     report_to=[], seed=cfg.seed, use_cpu=not _cuda(), max_length=_context_length(model),
                     truncation_mode="keep_end", lr_scheduler_type="linear", warmup_steps=0,
                     dataloader_num_workers=0, disable_tqdm=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         callbacks=callbacks)
    trainer.train()
    return trainer.model, {"pairs": len(rows)}


def _train_grpo(cfg, model, tok, rm, callbacks, out_tmp):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    train = [prompt_of(r) for r in read_jsonl(PROMPTS) if r["split"] == "train"]
    # TRL hands the reward function the formatted prompt text; map it back to the prompt the RM reads.
    by_formatted = {format_prompt(p, tok): p for p in train}

    def reward_model_score(prompts, completions, **_):
        return rm.score_responses([by_formatted.get(p, p) for p in prompts], [c.strip() for c in completions])

    args = GRPOConfig(output_dir=out_tmp, beta=cfg.beta, learning_rate=cfg.lr, max_steps=cfg.max_steps,
                      per_device_train_batch_size=cfg.batch_size, num_generations=cfg.num_generations,
                      max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                      logging_steps=1, save_strategy="no", report_to=[], seed=cfg.seed,
                      use_cpu=not _cuda(), dataloader_num_workers=0, disable_tqdm=False, lr_scheduler_type="linear",
                      warmup_steps=0, mask_truncated_completions=False)
    trainer = GRPOTrainer(model=model, reward_funcs=reward_model_score, args=args,
                          train_dataset=Dataset.from_list([{"prompt": format_prompt(p, tok)} for p in train]),
                          processing_class=tok, callbacks=callbacks)
    trainer.train()
    return trainer.model, {"prompts": len(train)}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run_optimize(params: Params) -> dict:
    import mlflow
    import torch

    from tasks import tracking
    from tasks.rewardmodel import RewardModel

    cfg = params.optimize
    champion = Path(params.policy.champion_dir)
    with tracking.stage_run("optimize", params) as run:
        torch.manual_seed(cfg.seed)
        model, tok = load_policy(champion)
        ref, _ = load_policy(champion)
        rm = RewardModel(REWARD, params.reward.max_length)
        probe_prompts = [prompt_of(r) for r in read_jsonl(PROMPTS) if r["split"] == "train"][:cfg.probe_prompts]
        curve: list[dict] = []
        log = lambda k, v, s: mlflow.log_metric(k, v, step=s)  # noqa: E731
        callbacks = _callbacks(cfg, tok, ref, rm, probe_prompts, curve, log)
        tmp = tempfile.mkdtemp(prefix="rft-optimize-")
        try:
            if cfg.algorithm == "dpo":
                trained, info = _train_dpo(cfg, model, tok, callbacks, tmp, params.label.ties)
            else:
                trained, info = _train_grpo(cfg, model, tok, rm, callbacks, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        trained.eval()
        final = probe(trained, ref, tok, rm, probe_prompts, cfg.temperature, cfg.max_completion_length, cfg.seed + 10**6)
        with atomic_path(OUT, is_dir=True) as out:
            trained.save_pretrained(out)
            tok.save_pretrained(out)
            mlflow.log_artifacts(str(out), artifact_path="model")
            parent = read_meta(champion)
            version = tracking.register_model(
                "policy", run.info.run_id, "model", aliases=["challenger"], content=dvc_md5(out),
                tags={"source": f"optimize:{cfg.algorithm}", "parent_version": str(parent.get("registry_version"))},
                description=f"Candidate from {cfg.algorithm} on policy v{parent.get('registry_version')}.")
            write_meta(out, {"registry_name": "policy", "registry_version": version, "run_id": run.info.run_id,
                             "source": f"optimize:{cfg.algorithm}", "parent_version": parent.get("registry_version"),
                             "base_md5": parent.get("base_md5")})
        CURVE.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(CURVE) as tmp_csv, tmp_csv.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["step", "reward", "kl", "length"])
            w.writeheader()
            w.writerows(curve)
        metrics = {**info, **{f"final_{k}": v for k, v in final.items()}, "registry_version": version,
                   "start_reward": curve[0]["reward"] if curve else float("nan")}
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        write_json(REPORT, {**metrics, "algorithm": cfg.algorithm})
    return metrics
