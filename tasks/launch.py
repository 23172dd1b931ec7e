"""Training under ``accelerate launch``: data-parallel processes on this machine (CPU or GPUs), DeepSpeed or FSDP.

The stage stays one process that logs and registers; only the training runs
under the launcher. ``launch_reward`` writes the pairs and settings to a spec
file, runs ``accelerate launch --config_file <reward.accelerate_config>
--num_processes N -m tasks.launch reward <spec>``, and reads back what the main
process saved: the model folder, its held-out stats and its training log,
which it replays into the stage's MLflow run. HF's Trainer under the launcher
shards the data across the processes and averages their gradients.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tasks.errors import RFTError


def launch_reward(train: list, val: list, cfg, out_dir: Path, log) -> dict:
    from tasks.params_audit import unwrap

    config = Path(cfg.accelerate_config)
    if not config.is_file():
        raise RFTError(f"reward.accelerate_config: {config} does not exist")
    with tempfile.TemporaryDirectory(prefix="rft-launch-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"train": train, "val": val, "cfg": dataclasses.asdict(unwrap(cfg)),
                                    "out_dir": str(out_dir), "stats": f"{tmp}/stats.json", "log": f"{tmp}/log.jsonl"}))
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "--num_processes", str(cfg.num_processes), "-m", "tasks.launch", "reward", str(spec)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RFTError(f"accelerate launch ({config}, {cfg.num_processes} processes) failed with status "
                           f"{proc.returncode}:\n{proc.stderr[-3000:]}")
        for line in Path(f"{tmp}/log.jsonl").read_text().splitlines():
            key, value, step = json.loads(line)
            log(key, value, step)
        return json.loads(Path(f"{tmp}/stats.json").read_text())


def _reward_worker(spec_path: str) -> None:
    from tasks.config import RewardConfig
    from tasks.reward import train_reward_model

    spec = json.loads(Path(spec_path).read_text())
    cfg = RewardConfig(**spec["cfg"])
    logged: list = []
    stats = train_reward_model([tuple(p) for p in spec["train"]], [tuple(p) for p in spec["val"]], cfg,
                               Path(spec["out_dir"]), lambda k, v, s: logged.append((k, v, s)))
    if stats:                                   # the main process
        Path(spec["log"]).write_text("".join(json.dumps(entry) + "\n" for entry in logged))
        Path(spec["stats"]).write_text(json.dumps(stats))


WORKERS = {"reward": _reward_worker}

if __name__ == "__main__":
    import tasks  # noqa: F401  (offline defaults)

    WORKERS[sys.argv[1]](sys.argv[2])
