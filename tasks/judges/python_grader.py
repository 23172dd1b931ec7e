"""Grader ``python``: the user's ``function(prompt_row, response) -> float | dict``, run in worker processes.

Each worker is ``tasks/judges/grader_worker.py`` started as a script (``workers`` of them, each serving one call
at a time), with:

- an environment trimmed to PATH, HOME, LANG, LC_ALL, TMPDIR and PYTHONPATH (the project's folder first, so
  ``package.module`` resolves as it does for ``rft``), plus the variables ``pass_env`` names. API keys,
  tracking passwords and every other variable are withheld from it. This is not a sandbox: the worker runs as
  the same user, so code that sets out to can still read what that user can (the stage's
  ``/proc/<pid>/environ``, the project's files). Run code you do not trust (a policy's programs) in a sandbox
  of your own inside the function;
- one thread for the numeric libraries (OMP, MKL, OpenBLAS), so that workers do not crowd the training's cores;
- its address space capped at ``memory_mb`` (``RLIMIT_AS``).

The protocol runs on private copies of the worker's pipes (``grader_worker.py``): what the function prints, or
a process it starts writes, goes to stderr and cannot be mistaken for an answer. A call that takes longer than
``timeout`` seconds stops its worker's whole process group (a new worker starts for the next call) and
scores ``error_score``, counted in ``stats['timeouts']``. A call that raises (MemoryError included) or returns
something other than a finite number (or a dict holding one under ``result_key``) scores ``error_score``,
counted in ``stats['errors']``; a worker that dies (a segfault, the kernel's OOM killer), or a replacement that
does not start, in ``stats['crashes']``. None of these stops the stage. A function that cannot be imported is a ConfigError naming
``judges.<name>.function``, raised when the grader is built.

``prompt_row`` is the prompt's row of the prompts file (its id, ``prompt`` or ``messages``, and its reference
fields), or ``{"prompt": ...}`` / ``{"messages": ...}`` where the caller has no rows.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.errors import ConfigError
from tasks.judges.graders import Grader

WORKER = Path(__file__).with_name("grader_worker.py")
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
ONE_THREAD = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
START_TIMEOUT = 60.0        # seconds a worker may take to import the function (a heavy package's first import)


def worker_env(pass_env, environ=None) -> dict:
    """The environment of a worker: ``KEPT_ENV`` and ``pass_env`` from ``environ``, the project folder first on
    PYTHONPATH, one thread per numeric library; nothing else."""
    environ = os.environ if environ is None else environ     # read only for the names above: secrets stay out
    env = {k: environ[k] for k in (*KEPT_ENV, *pass_env) if k in environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), environ.get("PYTHONPATH", "")) if p)
    env.update({k: "1" for k in ONE_THREAD})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def score_value(value, result_key: str) -> float | None:
    """The score in what the function returned: a finite number (a bool counts as 1 or 0), or a dict holding
    one under ``result_key``; None for anything else (an integer too large for a float included)."""
    if isinstance(value, dict):
        value = value.get(result_key)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        try:
            x = float(value)
        except OverflowError:
            return None
        return x if math.isfinite(x) else None
    return None


class _Worker:
    """One worker process and the thread that reads its answers."""

    def __init__(self, function: str, memory_mb: int, env: dict):
        self.proc = subprocess.Popen([sys.executable, str(WORKER), function, str(memory_mb)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True,
                                     bufsize=1, start_new_session=True)
        self.answers: queue.Queue = queue.Queue()
        self.seq = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.answers.put(json.loads(line))
            except ValueError:
                continue
        self.answers.put(None)                                  # the process ended

    def ask(self, message: dict | None, timeout: float):
        """The answer (a dict) to ``message`` (None: the ready message), or "timeout", or None when the process
        died. Each message carries a sequence number, and an answer without this call's number is dropped."""
        deadline = time.monotonic() + timeout
        if message is not None:
            self.seq += 1
            try:
                self.proc.stdin.write(json.dumps({**message, "seq": self.seq}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                got = self.answers.get(timeout=left)
            except queue.Empty:
                return "timeout"
            if got is None:
                return None
            if isinstance(got, dict) and (message is None or got.get("seq") == self.seq):
                return got

    def stop(self) -> None:
        """Kill the worker's whole process group (what the function started too), then reap the worker."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


def _stop_all(workers: list) -> None:
    for w in workers:
        w.stop()


class PythonGrader(Grader):
    def __init__(self, name: str, cfg):
        super().__init__(name, cfg)
        self.fields = tuple(cfg.fields)      # the callers hand these prompts' rows over
        self.env = worker_env(cfg.pass_env)
        self.stats.update(calls=0.0, errors=0.0, crashes=0.0, timeouts=0.0)
        self.idle: queue.Queue = queue.Queue()
        self.live: list[_Worker] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _stop_all, self.live)
        first = self._start()               # the first worker imports the function now: a bad path fails here
        if isinstance(first, str):
            raise ConfigError(f"judges.{self.key}.function: cannot import {cfg.function!r}: {first}")
        self.idle.put(first)

    def _start(self) -> "_Worker | str":
        """A ready worker, or why none started."""
        cfg = self.cfg
        worker = _Worker(cfg.function, cfg.memory_mb, self.env)
        ready = worker.ask(None, START_TIMEOUT)
        if not isinstance(ready, dict) or not ready.get("ready"):
            worker.stop()
            return ready.get("error", "no ready answer") if isinstance(ready, dict) else (
                f"its worker took more than {START_TIMEOUT:g} s to start" if ready == "timeout"
                else "its worker process died while importing it")
        with self._lock:
            self.live.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self.live.remove(worker)

    def _call(self, row: dict, response: str) -> float:
        cfg = self.cfg
        try:
            worker = self.idle.get_nowait()
        except queue.Empty:
            worker = self._start()
        with self._lock:
            self.stats["calls"] += 1
        if isinstance(worker, str):          # a replacement worker did not start: this call counts as a crash
            with self._lock:
                self.stats["crashes"] += 1
            return cfg.error_score
        answer = worker.ask({"row": row, "response": response}, cfg.timeout)
        if answer == "timeout" or answer is None:
            self._retire(worker)
            kind = "timeouts" if answer == "timeout" else "crashes"
            with self._lock:
                self.stats[kind] += 1
            return cfg.error_score
        self.idle.put(worker)
        value = score_value(answer.get("value"), cfg.result_key) if "value" in answer else None
        if value is None:
            with self._lock:
                self.stats["errors"] += 1
            return cfg.error_score
        return value

    def grade(self, prompts, responses, rows):
        rows = [dict(r) if r is not None else {"messages" if isinstance(p, list) else "prompt": p}
                for p, r in zip(prompts, rows if rows is not None else [None] * len(prompts))]
        if self.cfg.workers == 1 or len(responses) < 2:
            return [self._call(r, x) for r, x in zip(rows, responses)]
        with ThreadPoolExecutor(self.cfg.workers) as pool:
            return list(pool.map(self._call, rows, responses))

    def close(self) -> None:
        """Stop every worker; a later call starts a fresh one."""
        _stop_all(self.live)
        with self._lock:
            self.live.clear()
        while not self.idle.empty():
            self.idle.get_nowait()


def import_problem(function: str) -> str | None:
    """Why ``package.module`` of ``function`` cannot be found from the project's folder, or None; nothing of the
    user's code runs (each package level is looked up by ``importlib.machinery.PathFinder``, not imported)."""
    import importlib.machinery
    import importlib.util

    module = function.partition(":")[0]
    parts = module.split(".")
    path = [os.getcwd(), *sys.path]
    for depth, part in enumerate(parts):
        spec = importlib.machinery.PathFinder.find_spec(part, path)
        if spec is None and depth == 0:
            spec = importlib.util.find_spec(part)          # an installed top-level package (no code of it runs)
        if spec is None:
            return f"no module {'.'.join(parts[:depth + 1])!r} under {os.getcwd()} or on the Python path"
        if depth < len(parts) - 1:
            if not spec.submodule_search_locations:
                return f"{'.'.join(parts[:depth + 1])!r} is a module, not a package"
            path = list(spec.submodule_search_locations)
    return None
