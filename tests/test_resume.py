"""Resume after a kill: SIGKILL the optimize stage mid-training, rerun it, and land where an uninterrupted run
lands, with the champion and the registry untouched throughout (after torchtune's resume tests)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from conftest import merge

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.filterwarnings("ignore")]

# Long enough to be caught mid-run on a 2-core machine, short enough for CI.
CASES = {
    "dpo": ({"dpo": {"epochs": 3.0, "batch_size": 4}}, "checkpoint-*/trainer_state.json"),
    "ppo": ({"ppo": {"updates": 8, "rollout_batch_size": 8, "ppo_epochs": 2, "num_minibatches": 2,
                     "max_new_tokens": 12, "lr": 1e-3}}, "ppo-*.pt"),
}
# Final figures of a resumed run match an uninterrupted one to this tolerance (float reductions may reorder).
TOL = 1e-4


def _copy(built, dest, name):
    shutil.copytree(built, dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    merge(params, {"optimize": {"algorithm": name, "checkpoint_every": 1, "log_every": 100, **CASES[name][0]}})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def _stage(path, **kw):
    env = dict(os.environ)
    return subprocess.Popen(["rft", "stage", "optimize"], cwd=path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def _registry(path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{path / 'mlruns.db'}")
    return {a: v for a, v in client.get_registered_model("policy").aliases.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_optimize_resumes_after_sigkill(name, built_project, tmp_path):
    from tasks.io import dvc_md5

    built, _, _ = built_project
    whole = _copy(built, tmp_path / "whole", name)
    assert _stage(whole).wait(timeout=600) == 0
    expected = json.loads((whole / "reports/optimize/metrics.json").read_text())

    killed = _copy(built, tmp_path / "killed", name)
    champion, aliases = dvc_md5(killed / "models/champion"), _registry(killed)
    proc = _stage(killed)
    pattern = CASES[name][1]
    deadline = time.monotonic() + 600
    while not list((killed / "checkpoints/optimize").glob(f"*/{pattern}")):
        assert proc.poll() is None, f"the stage ended before its first checkpoint: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "reports/optimize/metrics.json").exists() or \
        json.loads((killed / "reports/optimize/metrics.json").read_text()) != expected
    assert dvc_md5(killed / "models/champion") == champion and _registry(killed) == aliases

    rerun = _stage(killed)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    got = json.loads((killed / "reports/optimize/metrics.json").read_text())
    assert got["resumed"] == 1 and expected["resumed"] == 0
    for key in ("final_probe_reward", "final_probe_kl", "final_probe_length", "final_probe_eos_rate"):
        assert got[key] == pytest.approx(expected[key], abs=TOL), key
    if name == "dpo":
        assert got["steps"] == expected["steps"]
    assert dvc_md5(killed / "models/champion") == champion
    # Only the challenger alias moved (the candidate); the champion alias stayed where it was.
    after = _registry(killed)
    assert after["champion"] == aliases["champion"]
    assert not list((killed / "checkpoints/optimize").iterdir())


class _Planted:
    """Unpickled, it would create the file its path names: what a full unpickle of a planted checkpoint runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_ppo_checkpoint_loads_tensors_only_and_a_planted_one_runs_nothing(tmp_path):
    import torch

    from tasks.algorithms.ppo import _save, load_checkpoint
    from tasks.errors import RFTError

    # What PPO saves: state dicts of tensors, the optimizer's numbers, the KL coefficient.
    model = torch.nn.Linear(3, 2)
    optim = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optim.step()
    _save(tmp_path, 4, {"update": 4, "policy": model.state_dict(), "critic": model.state_dict(),
                        "optim": optim.state_dict(), "kl_coef": 0.1})
    state = load_checkpoint(tmp_path / "ppo-4.pt")
    assert state["update"] == 4 and torch.equal(state["policy"]["weight"], model.weight.detach())
    # A checkpoint someone who can write the project folder planted: loaded with weights_only=False, it ran code.
    marker = tmp_path / "ran"
    torch.save({"update": 5, "policy": _Planted(str(marker))}, tmp_path / "ppo-5.pt")
    with pytest.raises(RFTError, match="ppo-5.pt: not a PPO checkpoint this project wrote"):
        load_checkpoint(tmp_path / "ppo-5.pt")
    assert not marker.exists()
