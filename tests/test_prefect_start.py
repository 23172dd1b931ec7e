"""Prefect's temporary server on a slow machine: the cycle waits while it starts, and fails only on a dead process
or a real bound.

Seen on a 2-core AVX2-only machine: a fresh PREFECT_HOME made Prefect's server healthy after 45 s (its database
migrations), and the first `rft cycle` stopped at once on Prefect's 20 s default."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from tasks.errors import RFTError

# A stand-in server: alive at once, healthy only after a delay (as a migrating Prefect server is), or never.
FAKE = textwrap.dedent("""
    import http.server, sys, time
    port = int(sys.argv[sys.argv.index("--port") + 1])
    delay = float(sys.argv[1])
    if delay < 0:
        sys.exit(1)
    time.sleep(delay)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *a):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
""")


def fake_server(tmp_path, delay: float):
    from tasks.prefect_server import TemporaryServer

    script = tmp_path / "fake_server.py"
    script.write_text(FAKE)
    server = TemporaryServer.__new__(TemporaryServer)
    server.env, server.cmd = dict(os.environ), [sys.executable, str(script), str(delay)]
    server._spawn()
    return server


@pytest.mark.servers
def test_the_wait_outlasts_a_slow_start_and_says_what_it_waits_for(tmp_path, capsys):
    server = fake_server(tmp_path, 2.5)
    try:
        t0 = time.monotonic()
        server.wait(say_after=0.5)
        assert time.monotonic() - t0 >= 2.5
        err = capsys.readouterr().err
        assert err.count("Prefect: waiting for its temporary server to start") == 1
    finally:
        server.stop()


@pytest.mark.servers
def test_a_dead_server_fails_at_once(tmp_path):
    server = fake_server(tmp_path, -1)
    t0 = time.monotonic()
    with pytest.raises(RFTError, match="exited with status 1"):
        server.wait()
    assert time.monotonic() - t0 < 10


@pytest.mark.servers
def test_a_server_that_never_answers_fails_at_the_bound(tmp_path):
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

    server = fake_server(tmp_path, 3600)
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 2}):
        with pytest.raises(RFTError, match="did not answer .* within 2"):
            server.wait(say_after=60)
    assert server.proc.poll() is not None          # stopped, not left behind


def test_the_bound_fits_a_slow_machine():
    # The entry points' set-up raises Prefect's 20 s default, for the cycle's wait and Prefect's own (rft retrain).
    out = subprocess.run([sys.executable, "-c", "from tasks.runtime import setup_process; setup_process(); "
                          "from prefect.settings import "
                          "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s; print(s.value())"],
                         capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items()
                              if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"})
    assert int(float(out.stdout.strip())) == 600


@pytest.mark.servers
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_prefects_real_server_starts_on_a_fresh_home_on_one_core_without_native_bf16(tmp_path):
    # The real server, on one core, under the AVX2 emulation (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY), with a
    # PREFECT_HOME that has no database yet.
    code = ("import os, time; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from tasks.prefect_server import TemporaryServer; t = time.monotonic(); s = TemporaryServer(); s.wait(); "
            "print(f'healthy after {time.monotonic() - t:.1f} s'); s.stop()")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "ONEDNN_MAX_CPU_ISA": "AVX2",
           "ATEN_CPU_CAPABILITY": "avx2"}
    env.pop("PREFECT_API_URL", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "healthy after" in out.stdout
    assert (tmp_path / "home" / "prefect.db").exists()
