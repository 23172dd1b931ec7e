"""Training under ``accelerate launch``: data-parallel processes on this machine (CPU or GPUs), DeepSpeed or FSDP.

The stage stays one process that logs and registers; only the training runs
under the launcher. ``launch_reward`` and ``launch_optimize`` write what the
training needs to a spec file (the pairs and settings; the whole params), run
``accelerate launch --config_file <config> --num_processes N -m tasks.launch
<kind> <spec>``, and read back what the main process saved: the model folder,
its figures and its training log, which they replay into the stage's MLflow
run. HF's Trainer (and TRL's trainers on it) under the launcher shards the
data across the processes and averages their gradients.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tasks.algorithms import REGISTRY
from tasks.config import RewardConfig, parse_params
from tasks.errors import RFTError
from tasks.io import scratch_dir
from tasks.manifest import stage_view
from tasks.optimize import prober, setup, train_policy
from tasks.params_view import underlying
from tasks.policy import load_policy
from tasks.precision import Precision
from tasks.reward_training import train_reward_model
from tasks.runtime import setup_process


def _config(key: str, path: str, algorithm=None) -> Path:
    """The launch config ``key`` names. For the optimize stage (``algorithm``, its registry entry) refuse the
    configs it cannot run: those that shard the parameters (FSDP, DeepSpeed ZeRO-3), since its probes and the
    online algorithms' rollouts sample with the whole model in one process; and DeepSpeed for an algorithm that
    steps its own optimizer, which DeepSpeed would not wrap."""
    import yaml

    config = Path(path)
    if not config.is_file():
        raise RFTError(f"{key}: {config} does not exist")
    if algorithm is not None:
        spec = yaml.safe_load(config.read_text()) or {}
        kind, zero = spec.get("distributed_type"), (spec.get("deepspeed_config") or {}).get("zero_stage")
        if kind == "FSDP" or (kind == "DEEPSPEED" and zero == 3):
            raise RFTError(f"{key}: {config} shards the parameters ({kind}{' ZeRO-3' if zero == 3 else ''}); the "
                           "optimize stage samples with the whole model in each process (its probes, the online "
                           "algorithms' rollouts): use infra/accelerate/ddp.yaml or zero2.yaml")
        if kind == "DEEPSPEED" and algorithm.own_optimizer:
            raise RFTError(f"{key}: {config} is DeepSpeed, which wraps a trainer's optimizer; {algorithm.name} "
                           "steps its own: use infra/accelerate/ddp.yaml")
    return config


@contextlib.contextmanager
def _scratch():
    """A scratch folder for the spec, the log and the trained model (``tasks/io.py::scratch_dir``)."""

    tmp = scratch_dir("launch")
    try:
        yield str(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _launch(kind: str, config: Path, processes: int, spec: dict, tmp: str, log, mixed) -> None:
    """Run ``tasks.launch <kind>`` under ``accelerate launch``, then replay the main process's log. The precision
    ``mixed`` (``tasks/precision.py``) overrides the launch config's ``mixed_precision``."""
    path = Path(tmp) / "spec.json"
    path.write_text(json.dumps({**spec, "log": f"{tmp}/log.jsonl"}))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--num_processes", str(processes), "--mixed_precision", mixed.accelerate_flag(),
           "-m", "tasks.launch", kind, str(path)]
    # The processes share this process's threads: N processes x all its threads would oversubscribe the cores.
    each = str(max(1, int(os.environ.get("OMP_NUM_THREADS", "1")) // processes))
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": each, "RFT_THREADS": each})
    if proc.returncode != 0:
        raise RFTError(f"accelerate launch ({config}, {processes} processes) failed with status "
                       f"{proc.returncode}:\n{proc.stderr[-3000:]}")
    for line in Path(f"{tmp}/log.jsonl").read_text().splitlines():
        key, value, step = json.loads(line)
        log(key, value, step)


def launch_reward(train: list, val: list, cfg, out_dir: Path, log, mixed) -> dict:
    config = _config("reward.accelerate_config", cfg.accelerate_config)
    with _scratch() as tmp:
        _launch("reward", config, cfg.num_processes,
                {"train": train, "val": val, "cfg": dataclasses.asdict(cfg), "out_dir": str(out_dir),
                 "stats": f"{tmp}/stats.json", "precision": dataclasses.asdict(mixed)}, tmp, log, mixed)
        return json.loads(Path(f"{tmp}/stats.json").read_text())


def launch_optimize(params, champion: Path, ckpt: Path, device: str, log, curve: list, table, mixed) -> tuple:
    """Train the policy in ``optimize.num_processes`` processes; returns (the trained model, loaded on
    ``device``, and the algorithm's info). The probe curve and tables of the main process join ``curve`` and
    go to ``table``."""

    cfg = params.optimize
    config = _config("optimize.accelerate_config", cfg.accelerate_config, REGISTRY[cfg.algorithm])
    with _scratch() as tmp:
        _launch("optimize", config, cfg.num_processes,
                {"params": dataclasses.asdict(underlying(params)), "champion": str(champion), "ckpt": str(ckpt),
                 "out_dir": f"{tmp}/model", "info": f"{tmp}/info.json", "curve": f"{tmp}/curve.json",
                 "tables": f"{tmp}/tables.json"}, tmp, log, mixed)
        curve.extend(json.loads(Path(f"{tmp}/curve.json").read_text()))
        for rows, name in json.loads(Path(f"{tmp}/tables.json").read_text()):
            table(rows, name)
        model, _ = load_policy(f"{tmp}/model", device)
        return model, json.loads(Path(f"{tmp}/info.json").read_text())


def _reward_worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    cfg = RewardConfig(**spec["cfg"])
    logged: list = []
    stats = train_reward_model([tuple(p) for p in spec["train"]], [tuple(p) for p in spec["val"]], cfg,
                               Path(spec["out_dir"]), lambda k, v, s: logged.append((k, v, s)),
                               Precision(**spec["precision"]))
    if stats:                                   # the main process
        Path(spec["log"]).write_text("".join(json.dumps(entry) + "\n" for entry in logged))
        Path(spec["stats"]).write_text(json.dumps(stats))


def _optimize_worker(spec_path: str) -> None:
    """One process of the optimize stage's data-parallel training: the stage's own setup and algorithm; the
    main process (rank 0) probes, logs and saves."""
    import torch
    from accelerate import PartialState

    spec = json.loads(Path(spec_path).read_text())
    params = stage_view(parse_params(spec["params"]), "optimize")    # as the stage reads them
    cfg, champion = params.optimize, Path(spec["champion"])
    PartialState()          # the process group, for the algorithms that run their own loops (tasks/algorithms/dist.py)
    # A worker of `accelerate launch`, which names each process's rank and device in its environment.
    main = int(os.environ.get("RANK", "0")) == 0
    device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    model, _ = load_policy(champion, device)
    s = setup(params, champion, device)
    logged, curve, tables = [], [], []
    log = (lambda k, v, step: logged.append((k, v, step))) if main else (lambda k, v, step: None)
    do_probe = prober(s, cfg, log, curve) if main else (lambda m, step: {})
    trained, info = train_policy(params, s, model, champion, Path(spec["ckpt"]), log, do_probe,
                                 table=lambda rows, name: tables.append((rows, name)))
    if main:
        trained.save_pretrained(spec["out_dir"])
        s.tok.save_pretrained(spec["out_dir"])
        Path(spec["log"]).write_text("".join(json.dumps(entry) + "\n" for entry in logged))
        Path(spec["curve"]).write_text(json.dumps(curve))
        Path(spec["tables"]).write_text(json.dumps(tables, default=str))
        numbers = {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}
        world = int(os.environ.get("WORLD_SIZE", 1))              # set by accelerate for each of its processes
        Path(spec["info"]).write_text(json.dumps({**numbers, "world_size": world}))


WORKERS = {"reward": _reward_worker, "optimize": _optimize_worker}

if __name__ == "__main__":
    setup_process()                 # an entry point: offline, no telemetry, threads

    WORKERS[sys.argv[1]](sys.argv[2])
