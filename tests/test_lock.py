"""One writer at a time (tasks/lock.py): a second writer waits or stops naming the holder; a killed holder's lock
is taken over with a message; `dvc repro` counts as a writer; the CLI's writing commands and the flows hold it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tasks.config import parse_params
from tasks.lock import ProjectBusy, lock_file, project_lock, read_holder

ROOT = Path(__file__).parents[1]


def cfg(**kw):
    return parse_params({"lock": kw}).lock


# A process that holds the project lock (as `rft cycle` would) until it is killed or `hold_s` ends.
HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tasks.config import parse_params
    from tasks.lock import project_lock
    with project_lock("rft cycle", parse_params({{}}).lock, root={proj!r}):
        print("held", flush=True)
        time.sleep(float(sys.argv[1]))
""")


@pytest.fixture
def holder(tmp_path):
    procs = []

    def start(hold_s: float = 60.0, proj: Path = tmp_path):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT), proj=str(proj)), str(hold_s)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_fail_names_the_holders_pid_command_and_start(tmp_path, holder):
    proc = holder()
    with pytest.raises(ProjectBusy) as err, project_lock("rft gc", cfg(on_busy="fail"), root=tmp_path):
        pytest.fail("a second writer got the lock")
    text = str(err.value)
    assert f"pid {proc.pid} (rft cycle), since 20" in text and "UTC" in text and "lock.on_busy: fail" in text, text


def test_wait_says_who_holds_it_then_runs_when_the_holder_ends(tmp_path, holder):
    proc = holder(hold_s=1.5)
    said = []
    t0 = time.monotonic()
    with project_lock("rft stage prepare", cfg(on_busy="wait", say_every_s=0.5), root=tmp_path, say=said.append,
                      poll_s=0.05):
        waited = time.monotonic() - t0
        assert proc.wait(timeout=30) == 0                    # the holder released it as it ended
        holder_now = read_holder(lock_file(tmp_path).read_text())
        assert holder_now.pid == os.getpid() and holder_now.command == "rft stage prepare"
    assert waited >= 1.0                                     # it held the lock 1.5 s
    assert said and all(f"pid {proc.pid} (rft cycle)" in line for line in said), said
    assert "waiting for the project lock" in said[0] and not any("took over" in line for line in said)
    assert len(said) >= 2                                    # progress, not one line and silence
    assert lock_file(tmp_path).read_text() == ""             # released: no record left behind


def test_wait_is_bounded(tmp_path, holder):
    proc = holder()
    t0 = time.monotonic()
    with pytest.raises(ProjectBusy, match=rf"waited .* \(lock.wait_s\).*pid {proc.pid} \(rft cycle\)"), \
            project_lock("rft gc", cfg(on_busy="wait", wait_s=0.6), root=tmp_path, say=lambda _: None, poll_s=0.05):
        pytest.fail("a second writer got the lock")
    assert 0.5 <= time.monotonic() - t0 < 10


def test_a_killed_holders_lock_is_taken_over_with_a_message(tmp_path, holder):
    proc = holder()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    said = []
    with project_lock("rft cycle", cfg(on_busy="fail"), root=tmp_path, say=said.append):
        pass
    assert len(said) == 1 and "took over the project lock" in said[0] and f"pid {proc.pid} (rft cycle)" in said[0]


def test_reentrant_in_one_process_and_held_until_the_outer_exits(tmp_path):
    probe = [sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from tasks.config import parse_params
        from tasks.lock import ProjectBusy, project_lock
        try:
            with project_lock("probe", parse_params({{"lock": {{"on_busy": "fail"}}}}).lock, root={str(tmp_path)!r}):
                print("free")
        except ProjectBusy as exc:
            print("busy:", exc)
    """)]
    with project_lock("rft cycle", cfg(), root=tmp_path):
        with project_lock("the rft-cycle flow", cfg(), root=tmp_path):      # the CLI, then its flow
            pass
        out = subprocess.run(probe, capture_output=True, text=True).stdout
        assert out.startswith("busy:") and f"pid {os.getpid()} (rft cycle)" in out, out
    assert subprocess.run(probe, capture_output=True, text=True).stdout.strip() == "free"


def test_a_dvc_command_holding_dvcs_lock_is_a_writer_except_for_its_own_stages(tmp_path, monkeypatch):
    (tmp_path / ".dvc" / "tmp").mkdir(parents=True)
    # DVC locks .dvc/tmp/lock with zc.lockfile for a whole `dvc repro`; this process stands in for it.
    dvc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, zc.lockfile
        lock = zc.lockfile.LockFile({str(tmp_path / '.dvc/tmp/lock')!r})
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert dvc.stdout.readline().strip() == "held"
        monkeypatch.delenv("DVC_STAGE", raising=False)
        with pytest.raises(ProjectBusy, match=rf"pid {dvc.pid} \(a dvc command"), \
                project_lock("rft cycle", cfg(on_busy="fail"), root=tmp_path):
            pytest.fail("rft cycle ran while dvc repro held the project")
        assert lock_file(tmp_path) == tmp_path / ".dvc/tmp/rft.lock"
        monkeypatch.setenv("DVC_STAGE", "prepare")            # `dvc repro` runs `rft stage prepare`
        with project_lock("rft stage prepare", cfg(on_busy="fail"), root=tmp_path):
            pass
    finally:
        dvc.kill()
        dvc.wait()


@pytest.mark.parametrize("argv", [["gc"], ["stage", "prepare"], ["keep-trained"], ["cycle"], ["retrain"]])
def test_the_clis_writing_commands_refuse_while_another_writer_holds_the_project(project, holder, capsys, argv):
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["lock"] = {"on_busy": "fail"}
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = holder(proj=project)
    from tasks.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"the project is busy: pid {proc.pid} (rft cycle), since" in err, err
    assert "Traceback" not in err
    assert not Path("data/prompts").exists() and not Path("mlruns.db").exists()     # nothing ran


def test_a_flow_run_holds_the_project_without_the_cli(project, holder):
    # A deployment's worker calls the flow function itself: the flow takes the lock.
    from flows.cycle import cycle
    from flows.retrain import retrain

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["lock"] = {"on_busy": "fail"}
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = holder(proj=project)
    for flow in (cycle, retrain):
        with pytest.raises(ProjectBusy, match=rf"pid {proc.pid} \(rft cycle\)"):
            flow.fn("params.yaml")
    assert not Path("mlruns.db").exists()
