"""One training step of every trainer, fp32 against bf16, on this CPU and on an emulated CPU without native bf16.

    python benchmarks/precision.py --project DIR [--steps 6] [--trainers reward grpo ...]

``DIR`` is a project after a default cycle (a champion, a reward model and labels), for instance the working
copy ``benchmarks/cycle.py --workdir W`` leaves in ``W/proj``. Each measurement is its own process, so each has
its own oneDNN and ATen dispatch:

- **native**: this CPU as it is;
- **emulated AVX2**: ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` (``benchmarks/cpu.py``), a CPU without
  native bf16; the first line of each side says what torch reports and how much slower a bf16 matrix product is.

Trainers, each built by the project's own code with ``train.precision`` set to fp32 or bf16:
``reward`` (TRL RewardTrainer, the train_reward stage), ``grpo``, ``rloo``, ``dpo``, ``kto``, ``best_of_n``
(its SFT), ``online_dpo`` (its DPO rounds), ``constitutional`` (its SFT), ``ppo`` (the project's own loop) and
``bootstrap`` (the project's own pretraining loop on the default tiny GPT). A step is one optimizer step with
everything the trainer does in it (GRPO and RLOO sample their completions inside it; PPO's update is its
rollout, scoring and learning); the figure is the mean of steps 2..``--steps`` (the first pays for warm-up).

``auto`` is run too, as a third setting on each side (it resolves per process: ``tasks/precision.py``; the
header says to what), and auto/fp32 is printed for both sides (target: at most 1.1x under the emulation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.cpu import EMULATE_AVX2  # noqa: E402

TRAINERS = ("reward", "grpo", "rloo", "dpo", "kto", "best_of_n", "online_dpo", "constitutional", "ppo", "bootstrap")


class Enough(Exception):
    """Raised from inside training once the steps to time have run."""


def _trainer_timer(times: list, steps: int):
    """Every transformers Trainer made from now on times its optimizer steps into ``times`` and stops the run
    (``Enough``) after ``steps`` of them."""
    import transformers
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)
            if len(times) >= steps:
                raise Enough

    init = transformers.Trainer.__init__

    def patched(self, *a, **kw):
        init(self, *a, **kw)
        self.add_callback(StepTimer())

    transformers.Trainer.__init__ = patched


def _params(setting: str, trainer: str, steps: int):
    from tasks.config import TrainConfig
    from tasks.manifest import load_params

    params = load_params("params.yaml")
    opt = params.optimize
    sections = {"grpo": {"max_steps": steps + 1}, "rloo": {"max_steps": steps + 1},
                "ppo": {"updates": steps + 1}, "constitutional": {"prompts": 32, "rl": "none"},
                "online_dpo": {"prompts_per_round": 64}}
    if trainer in sections:
        opt = dataclasses.replace(opt, **{trainer: dataclasses.replace(getattr(opt, trainer), **sections[trainer])})
    if trainer != "reward" and trainer != "bootstrap":
        opt = dataclasses.replace(opt, algorithm=trainer, log_every=10**6, checkpoint_every=0, probe_budget=None)
    return dataclasses.replace(params, train=TrainConfig(precision=setting), optimize=opt)


def worker(trainer: str, setting: str, steps: int) -> dict:
    import torch

    from tasks.precision import resolve

    params = _params(setting, trainer, steps)
    mixed = resolve(setting)
    times: list = []
    torch.manual_seed(0)
    if trainer == "bootstrap":
        from transformers import AutoTokenizer

        from tasks.bootstrap import _pretrain_batches, _train_loop
        from tasks.io import read_jsonl
        from tasks.policy import tiny_gpt

        cfg = params.bootstrap
        tok = AutoTokenizer.from_pretrained("models/base")
        ids = [i for r in read_jsonl("data/corpus/texts.jsonl")[:400] for i in tok(r["text"])["input_ids"]]
        batches, _ = _pretrain_batches(ids, cfg.block_size, cfg.batch_size, 0)
        model = tiny_gpt(len(tok), cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions, tok.eos_token_id)
        marks = []

        def timed(step):
            marks.append(time.perf_counter())
            return batches(step)

        _train_loop(model, timed, steps + 1, cfg, "bench", lambda *a: None, mixed)
        times = [b - a for a, b in zip(marks, marks[1:])]
    elif trainer == "reward":
        import tempfile

        from tasks.reward_training import labelled_pairs, train_reward_model

        _trainer_timer(times, steps)
        train, _ = labelled_pairs(params)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                train_reward_model(train, [], params.reward, Path(tmp) / "rm", mixed=mixed)
            except Enough:
                pass
    else:
        import tempfile

        from tasks.optimize import setup, train_policy
        from tasks.policy import load_policy

        champion = Path(params.policy.champion_dir)
        model = load_policy(champion, "cpu")[0]
        s = setup(params, champion, "cpu")
        keep = {"best_of_n": 32}.get(trainer)
        if keep:
            s = dataclasses.replace(s, data=s.data[:keep], train=s.train[:keep])
        marks = []

        def log(key, value, step):
            if key == "objective/kl":          # PPO logs it once per update, after the update's learning
                marks.append(time.perf_counter())
                if len(marks) > steps:
                    raise Enough

        _trainer_timer(times, steps)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            try:
                train_policy(params, s, model, champion, Path(tmp) / "ckpt", log, lambda m, step: {})
            except Enough:
                pass
        if trainer == "ppo":
            times = [b - a for a, b in zip([t0] + marks, marks)]
    timed = times[1:steps] or times
    return {"trainer": trainer, "setting": setting, "dtype": mixed.dtype, "steps": len(times),
            "step_s": sum(timed) / len(timed), "all": [round(t, 3) for t in times]}


def run_worker(project: Path, trainer: str, setting: str, steps: int, extra: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", trainer, "--setting", setting,
           "--steps", str(steps), "--project", str(project)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **extra}, cwd=project)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{trainer} {setting} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def auto_dtype(extra: dict) -> str:
    code = "from tasks.precision import resolve; print(resolve('auto', 'cpu').dtype)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, **extra}, cwd=ROOT).stdout.strip().splitlines()[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True, help="a project after a default cycle")
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per measurement (the first is not counted)")
    ap.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS)
    ap.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    ap.add_argument("--setting", choices=("fp32", "bf16", "auto"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    project = args.project.resolve()
    if args.worker:
        os.chdir(project)
        from tasks.runtime import setup_process

        setup_process()             # an entry point: offline, no telemetry, threads, before torch loads

        print(json.dumps(worker(args.worker, args.setting, args.steps)), flush=True)
        return 0
    sides = {"native": {}, "emulated AVX2": EMULATE_AVX2}
    autos = {}
    for side, extra in sides.items():
        line = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu.py")], capture_output=True,
                              text=True, check=True, env={**os.environ, **extra}).stdout.strip()
        autos[side] = auto_dtype(extra)
        print(f"{side}: {line}" if extra else line, flush=True)
    rows = []
    for trainer in args.trainers:
        t = {}
        for side, extra in sides.items():
            for setting in ("fp32", "bf16", "auto"):
                t[side, setting] = run_worker(project, trainer, setting, args.steps, extra)["step_s"]
        rows.append((trainer, t))
        n, e = (lambda k: t["native", k]), (lambda k: t["emulated AVX2", k])
        print(f"{trainer:<15} native fp32 {n('fp32'):6.2f}s bf16 {n('bf16'):6.2f}s auto {n('auto'):6.2f}s | emulated "
              f"fp32 {e('fp32'):6.2f}s bf16 {e('bf16'):7.2f}s auto {e('auto'):6.2f}s | bf16/fp32 native "
              f"{n('bf16') / n('fp32'):5.2f}x emulated {e('bf16') / e('fp32'):5.2f}x | auto/fp32 native "
              f"{n('auto') / n('fp32'):4.2f}x emulated {e('auto') / e('fp32'):4.2f}x", flush=True)
    worst = max(t["emulated AVX2", "auto"] / t["emulated AVX2", "fp32"] for _, t in rows)
    print(f"\nauto picks {autos['native']} natively and {autos['emulated AVX2']} under the emulation; the slowest "
          f"trainer with auto under the emulation takes {worst:.2f}x its fp32 step (target: at most 1.1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
