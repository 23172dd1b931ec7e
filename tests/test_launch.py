"""Training under `accelerate launch`: the reward stage's data-parallel path on 2 CPU processes (gloo), the
configs in infra/accelerate/, and a missing config named by its key."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, TINY_SECTIONS, merge


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("zero2", "DEEPSPEED"), ("zero3", "DEEPSPEED"),
                                        ("fsdp", "FSDP")])
def test_accelerate_configs(name, kind):
    cfg = yaml.safe_load((ROOT / f"infra/accelerate/{name}.yaml").read_text())
    assert cfg["distributed_type"] == kind and cfg["num_machines"] == 1 and cfg["num_processes"] >= 2
    if kind == "DEEPSPEED":
        assert cfg["deepspeed_config"]["zero_stage"] == int(name[-1])


def _project(built, dest, **reward):
    shutil.copytree(built, dest)
    shutil.copytree(ROOT / "infra", dest / "infra", dirs_exist_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    merge(params, {"reward": {"launcher": "accelerate", "num_processes": 2, **reward}})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_reward_stage_trains_on_two_cpu_processes(built_project, tmp_path):
    from mlflow import MlflowClient

    from tasks.reward_model import RewardModel

    built, _, _ = built_project
    path = _project(built, tmp_path / "proj")
    out = subprocess.run(["rft", "stage", "train_reward"], cwd=path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    stats = json.loads((path / "reports/reward/metrics.json").read_text())
    assert stats["world_size"] == 2                      # two processes shared the data, gradients averaged
    assert 0.0 <= stats["heldout_accuracy"] <= 1.0 and stats["train_pairs"] > 0
    scores = RewardModel(path / "models/reward", 64).score(["a fine meal", "cold soup"])
    assert len(scores) == 2 and all(s == s for s in scores)            # a model that loads and scores
    client = MlflowClient(f"sqlite:///{path / 'mlruns.db'}")
    (run,) = client.search_runs(["1"], "tags.`rft.stage` = 'train_reward'", order_by=["attributes.start_time DESC"],
                                max_results=1)
    assert run.data.tags["reward.launcher"] == "accelerate"
    assert client.get_metric_history(run.info.run_id, "train_loss")    # the main process's log, replayed


@pytest.mark.slow
def test_a_missing_accelerate_config_is_named(built_project, tmp_path):
    built, _, _ = built_project
    path = _project(built, tmp_path / "proj", accelerate_config="infra/accelerate/nope.yaml")
    out = subprocess.run(["rft", "stage", "train_reward"], cwd=path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and "reward.accelerate_config: infra/accelerate/nope.yaml does not exist" in out.stderr


def test_optimize_launch_refuses_configs_that_shard_the_parameters_and_deepspeed_for_its_own_optimizer():
    from tasks.algorithms import REGISTRY
    from tasks.errors import RFTError
    from tasks.launch import _config

    for algorithm in REGISTRY.values():
        assert _config("optimize.accelerate_config", str(ROOT / "infra/accelerate/ddp.yaml"), algorithm)
        for name, why in (("zero3", "DEEPSPEED ZeRO-3"), ("fsdp", "FSDP")):
            with pytest.raises(RFTError, match=f"optimize.accelerate_config: .*{name}.yaml shards the parameters "
                                               f"\\({why}\\); the optimize stage samples with the whole model"):
                _config("optimize.accelerate_config", str(ROOT / f"infra/accelerate/{name}.yaml"), algorithm)
    zero2 = str(ROOT / "infra/accelerate/zero2.yaml")
    for algorithm in ("grpo", "rloo", "dpo", "kto", "best_of_n", "online_dpo", "constitutional"):
        assert _config("optimize.accelerate_config", zero2, REGISTRY[algorithm])   # a TRL trainer's optimizer
    with pytest.raises(RFTError, match="zero2.yaml is DeepSpeed, which wraps a trainer's optimizer; ppo steps its "
                                       "own: use infra/accelerate/ddp.yaml"):
        _config("optimize.accelerate_config", zero2, REGISTRY["ppo"])
    # The reward stage trains through a trainer and gathers the shards to save: every config is accepted.
    for name in ("ddp", "zero2", "zero3", "fsdp"):
        assert _config("reward.accelerate_config", str(ROOT / f"infra/accelerate/{name}.yaml"))


def test_shares_tile_the_items_in_rank_order():
    from tasks.algorithms.dist import gather, sharded, span

    # 10 items over 3 processes: 10*0//3=0, 10*1//3=3, 10*2//3=6, 10*3//3=10 -> sizes 3, 3, 4.
    assert [span(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    # Fewer items than processes: some shares are empty, none overlaps.
    assert [span(2, r, 4) for r in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    # In one process (no process group) a share is everything and gathering is the identity.
    assert sharded(lambda part: [x * 2 for x in part], [1, 2, 3]) == [2, 4, 6] and gather([5]) == [5]


@pytest.mark.matrix
@pytest.mark.filterwarnings("ignore")
# One of each way an algorithm trains under the launcher: a TRL trainer (dpo), the project's own optimizer (ppo) and
# an online loop that samples and judges a share of the prompts in each process (online_dpo). Every algorithm's own
# training is checked in one process by tests/test_algorithms.py.
@pytest.mark.parametrize("algorithm", ["dpo", "ppo", "online_dpo"])
def test_optimize_stage_trains_on_two_cpu_processes(built_project, tmp_path, algorithm):
    import torch
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM

    built, _, _ = built_project
    path = tmp_path / "proj"
    shutil.copytree(built, path)
    shutil.copytree(ROOT / "infra", path / "infra", dirs_exist_ok=True)
    params = yaml.safe_load((path / "params.yaml").read_text())
    merge(params, {"optimize": {"algorithm": algorithm, "launcher": "accelerate", "num_processes": 2,
                                algorithm: TINY_SECTIONS[algorithm]}})        # a few steps each
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = subprocess.run(["rft", "stage", "optimize"], cwd=path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((path / "reports/optimize/metrics.json").read_text())
    assert report["world_size"] == 2 and report["algorithm"] == algorithm and report["steps"] >= 1
    assert len((path / "reports/optimize/curve.csv").read_text().splitlines()) > 1   # the main process's probes
    cand = AutoModelForCausalLM.from_pretrained(path / "models/candidate").state_dict()
    champ = AutoModelForCausalLM.from_pretrained(path / "models/champion").state_dict()
    assert any(not torch.equal(cand[k], champ[k]) for k in champ)      # trained, and saved by the main process
    client = MlflowClient(f"sqlite:///{path / 'mlruns.db'}")
    (run,) = client.search_runs(["1"], "tags.`rft.stage` = 'optimize'", order_by=["attributes.start_time DESC"],
                                max_results=1)
    assert run.data.tags["optimize.launcher"] == "accelerate"
    # The main process's log, replayed: TRL's loss; PPO's own policy loss (averaged over the processes); online
    # DPO's loss per round.
    loss = {"ppo": "loss/policy", "online_dpo": "round/dpo_loss"}.get(algorithm, "train/loss")
    assert client.get_metric_history(run.info.run_id, loss)
