"""What every policy optimizer shares: its registry entry, what ``train`` receives, the TRL arguments
common to all TRL trainers, the MLflow logging callback, and resuming from a checkpoint.

An algorithm is one module of ``tasks/algorithms/`` with a typed ``Config``
(its ``optimize.<name>`` section of ``params.yaml``), the kind of data it
consumes, and one entry point::

    def train(run: Run) -> tuple[model, dict]

A Config whose keys name judges lists them in ``judge_keys`` (for example online DPO's ``("judge",)``): the
config checks them on load, the optimize stage builds them, and ``validate_prompts`` declares them in
``dvc.yaml`` (the reference fields those judges read are checked there).

``Run`` carries the policy, the frozen reference (the champion), the tokenizer,
the data, the reward, the callbacks and the checkpoint folder. ``train``
returns the trained policy and a dict of summary numbers for the stage report.
Heavy imports (torch, TRL) happen inside ``train`` so that loading params stays
cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from tasks.precision import fp32
from tasks.progress import label_progress
from tasks.tracking import log_many

# What an algorithm consumes from the cycle's data.
PROMPTS = "prompts"    # training prompts, scored online by the reward (optimize.reward)
PAIRS = "pairs"        # labelled preference pairs: prompt, chosen, rejected
BINARY = "binary"      # single responses marked good or bad: prompt, completion, label


@dataclass(frozen=True)
class Algorithm:
    name: str
    config: type              # the dataclass of its optimize.<name> section
    consumes: str             # PROMPTS | PAIRS | BINARY
    module: ModuleType        # its module, whose train(run) -> (model, info) runs it
    summary: str              # one line for `rft params` and the docs
    own_optimizer: bool = False  # steps its own optimizer, not a TRL trainer's (DeepSpeed cannot wrap it)

    @property
    def judge_keys(self) -> tuple[str, ...]:
        """The keys of its section that name judges (``judge_keys`` on its Config; none by default)."""
        return tuple(getattr(self.config, "judge_keys", ()))

    def judges(self, optimize) -> dict[str, str]:
        """The judges its section of ``optimize`` names, by key (checked on load, built by the optimize stage); a
        key set to null names none. Only those keys are read (a stage may declare just them)."""
        section = getattr(optimize, self.name) if self.judge_keys else None
        return {k: getattr(section, k) for k in self.judge_keys if getattr(section, k) is not None}

    def train(self, run: "Run"):
        return self.module.train(run)


@dataclass
class Run:
    """Everything an algorithm's ``train`` gets. ``reward(prompts, responses)`` is the weighted sum of the
    ``optimize.reward`` judges; ``reward_funcs`` are the same judges one by one (TRL logs each) with
    ``reward_weights``."""
    cfg: Any                      # the algorithm's own config section
    common: Any                   # the whole optimize section (seed, lora, checkpoint_every, ...)
    policy: Any
    reference: Any                # the champion, frozen
    tok: Any
    data: list                    # prompts, pairs or binary rows, per Algorithm.consumes
    reward: Callable[[list, list], list[float]] | None
    reward_funcs: list
    reward_weights: list[float]
    callbacks: list               # transformers TrainerCallbacks (MLflow logging and probes)
    log: Callable[[str, float, int], None]
    probe: Callable[[Any, int], dict]
    checkpoint_dir: Path
    champion: Path                # the champion's folder (a separate value model starts from it)
    judge: Callable[[str], Any]   # build a judge of the judges section by name
    rubric: Any = None            # the task's rubric (tasks/rubric.py)
    reward_model_path: Path | None = None   # the first reward_model judge of optimize.reward (PPO's value init)
    table: Callable[[list[dict], str], None] = lambda rows, name: None   # log a table (MLflow) of rows
    trainer: Any = None           # set by ``fit``: the TRL trainer that trained (its accelerator gathers shards)
    precision: Any = None         # train.precision in force (tasks/precision.py); None: fp32
    rows_of: Callable[[list], list] | None = None   # prompts -> their prompt rows (graders' reference fields)


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_args(config_cls, run: Run, **kwargs):
    """A TRL config with the arguments every trainer of this project shares; ``kwargs`` are the algorithm's.

    Checkpoints go to ``run.checkpoint_dir`` every ``optimize.checkpoint_every`` steps (0: none) and only the
    latest is kept; logging is every step, to MLflow through the project's callback, never TRL's own
    reporters. ``bf16`` and ``fp16`` are always set, from ``run.precision``: TRL's own default turns bf16 on,
    even on a CPU without native bf16 (``tasks/precision.py``)."""
    every = run.common.checkpoint_every
    shared = dict(output_dir=str(run.checkpoint_dir), learning_rate=run.cfg.lr, seed=run.common.seed,
                  logging_steps=1, report_to=[], use_cpu=not cuda(), dataloader_num_workers=0,
                  lr_scheduler_type="linear", warmup_steps=0, disable_tqdm=False,
                  save_strategy="steps" if every else "no", save_steps=every or 500, save_total_limit=1,
                  save_only_model=False, **precision_of(run).trl_kwargs())
    return config_cls(**{**shared, **kwargs})


def precision_of(run: Run):
    """The run's precision; fp32 when none was given."""

    return run.precision or fp32("cuda" if cuda() else "cpu")


def last_checkpoint(folder: Path) -> str | None:
    """The newest ``checkpoint-<step>`` folder that a trainer finished writing, or None.

    The trainer writes ``trainer_state.json`` last, so a folder without it was cut short by a crash and is
    skipped (and removed)."""
    import shutil

    found = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True) if folder.is_dir() else []
    for p in found:
        if (p / "trainer_state.json").exists():
            return str(p)
        shutil.rmtree(p, ignore_errors=True)
    return None


def fit(trainer, run: Run, phase: str = "") -> dict:
    """Train, resuming from the last complete checkpoint in ``run.checkpoint_dir`` when there is one. The
    console shows a bar named ``optimize <algorithm> [phase]`` and a line every ``optimize.log_every`` steps."""

    label_progress(trainer, " ".join(filter(None, ["optimize", run.common.algorithm, phase])),
                   run.common.log_every)
    resume = last_checkpoint(run.checkpoint_dir)
    if resume:
        print(f"optimize: resuming from {resume}", flush=True)
        run.log("resumed_from_step", float(resume.rsplit("-", 1)[1]), 0)
    out = trainer.train(resume_from_checkpoint=resume)
    run.trainer = trainer
    return {"train_loss": float(out.training_loss), "steps": int(out.global_step), "resumed": bool(resume)}


def constant_metrics(args) -> tuple[str, ...]:
    """The prefixes of TRL's logged metrics that are constant by construction under ``args``, so not worth a
    chart: GRPO and RLOO report how often the policy ratio was clipped (``clip_ratio/*``), but when every
    update is on-policy (one iteration per generation, consumed in one optimizer step) the ratio is exactly 1
    and those are 0 at every step."""
    iterations = getattr(args, "num_iterations", None)
    per_generation = getattr(args, "steps_per_generation", None)
    on_policy = iterations == 1 and per_generation in (None, getattr(args, "gradient_accumulation_steps", 1))
    return ("clip_ratio",) if on_policy else ()


def mlflow_callback(run_log: Callable, probe: Callable, log_every: int):
    """A transformers callback: TRL's own metrics at every step (as ``train/<name>``) and the project's
    probe (reward, KL to the reference, length, EOS rate of fresh samples) at step 0, every ``log_every`` steps
    and at the last step."""
    from transformers import TrainerCallback

    class MLflowHealth(TrainerCallback):
        constant: tuple[str, ...] = ()
        offset = 0          # the steps of earlier phases (continue_steps): one axis for a two-phase algorithm

        def on_train_begin(self, args, state, control, model=None, **kw):
            self.constant = constant_metrics(args)
            if state.global_step == 0 and self.offset == 0:      # a later phase starts where the last one's probe was
                probe(model, 0)

        def on_step_end(self, args, state, control, model=None, **kw):
            # Every log_every steps and at the last: steps that follow from the step count alone.
            if state.global_step % log_every == 0 or state.global_step == state.max_steps:
                probe(model, self.offset + state.global_step)

        def on_log(self, args, state, control, logs=None, **kw):
            log_many(run_log, {"train/" + k.replace("/", "_"): float(v) for k, v in (logs or {}).items()
                               if isinstance(v, (int, float)) and not k.startswith(self.constant)},
                     self.offset + state.global_step)

    return MLflowHealth()


def continue_steps(run: Run, done: int) -> None:
    """A second training phase (Constitutional AI's RL after its SFT) logs and probes after the ``done`` steps of
    the first, not from step 0 again: one value per step in MLflow and in the curve."""
    for cb in run.callbacks:
        if hasattr(cb, "offset"):
            cb.offset = done


class TrlReward:
    """A judge as a TRL reward function: TRL passes the formatted prompt text, the judge reads the prompt
    (text or messages) it was formatted from. ``__name__`` is the judge's name, so TRL logs
    ``rewards/<name>/mean``."""

    def __init__(self, name: str, judge, by_formatted: dict, rows_of=None):
        self.__name__ = name
        self.judge = judge
        self.by_formatted = by_formatted
        self.rows_of = rows_of          # prompts -> their prompt rows, for a judge that reads reference fields

    def __call__(self, prompts, completions, **_):
        asked = [self.by_formatted.get(p, p) for p in prompts]
        rows = self.rows_of(asked) if self.rows_of is not None and self.judge.fields else None
        return self.judge.score(asked, [c.strip() for c in completions], rows)
