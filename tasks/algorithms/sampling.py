"""The settings every online algorithm shares: how it samples from the policy and how long it trains."""

from __future__ import annotations

from dataclasses import dataclass

from tasks.algorithms import base
from tasks.errors import ConfigError
from tasks.options import opt
from tasks.prompting import format_prompt
from tasks.rollout import NEUTRAL_SAMPLING, project_sampling


@dataclass(frozen=True)
class OnlineConfig:
    lr: float = opt(2e-4, "Peak learning rate (linear decay).", gt=0)
    max_steps: int = opt(80, "Optimizer steps.", ge=1)
    batch_size: int = opt(32, "Completions per step (a multiple of num_generations).", ge=1)
    num_generations: int = opt(8, "Completions sampled per prompt (the group).", ge=2)
    max_completion_length: int = opt(48, "Longest completion in tokens.", ge=1)
    temperature: float = opt(1.0, "Sampling temperature; logits are divided by it for the log-probabilities too.",
                             gt=0)
    beta: float = opt(0.04, "KL coefficient: penalty on KL(policy || reference), the reference being the champion.",
                      ge=0)

    def __post_init__(self):
        if self.batch_size % self.num_generations:
            raise ConfigError(f"batch_size: {self.batch_size} is not a multiple of num_generations "
                              f"({self.num_generations}); each step trains on whole groups")


def trl_online_kwargs(cfg: OnlineConfig) -> dict:
    """The OnlineConfig fields in the names TRL's GRPOConfig and RLOOConfig use."""
    return dict(beta=cfg.beta, max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
                num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                temperature=cfg.temperature)


def train_online(run, trainer_cls, config_cls, **extra):
    """Run a TRL online trainer (GRPO, RLOO) on the training prompts with the run's reward functions."""
    from datasets import Dataset

    # TRL sets temperature, top-k, top-p and the repetition penalty; the other logits processors are pinned to
    # their neutral values, and the checkpoint's own generation_config.json is set aside while training samples
    # (transformers fills every setting left unset from it), so the trainer's log-probs score what it sampled.
    settings = {**trl_online_kwargs(run.cfg), "reward_weights": run.reward_weights,
                "mask_truncated_completions": False, "generation_kwargs": dict(NEUTRAL_SAMPLING), **extra}
    args = base.trl_args(config_cls, run, **settings)
    dataset = Dataset.from_list([{"prompt": format_prompt(p, run.tok)} for p in run.data])
    trainer = trainer_cls(model=run.policy, reward_funcs=run.reward_funcs, args=args, train_dataset=dataset,
                          processing_class=run.tok, callbacks=run.callbacks)
    with project_sampling(run.policy, keep_ids=True):
        info = base.fit(trainer, run)
    return trainer.model, {**info, "prompts": len(run.data)}
