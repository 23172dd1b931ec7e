"""The worker process of the ``python`` grader (``tasks/judges/python_grader.py``). Standard library only: it
is started as a script, with a trimmed environment, and never imports the project.

It caps its own address space (``RLIMIT_AS``) first, then imports the user's function and answers
``{"ready": true}`` or ``{"error": ...}``. Then, for each JSON line ``{"row": ..., "response": ...}`` on stdin,
it writes one JSON line on stdout: ``{"value": <what the function returned>}`` or ``{"error": "<type>: <text>"}``.
The parent enforces the time limit by stopping the process.
"""

import importlib
import json
import os
import resource
import sys
import traceback


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    # The script's own folder is not the user's: a user module named like a file here must not be shadowed.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, os.getcwd())
    function, memory_mb = sys.argv[1], int(sys.argv[2])
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout
    sys.stdout = sys.stderr            # what the function prints goes to stderr, not into the protocol

    def answer(obj) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    module, _, attr = function.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
        if not callable(fn):
            raise TypeError(f"{function} is a {type(fn).__name__}, not a function")
    except BaseException as exc:       # anything the import raises is the user's to see, in one line
        answer({"error": f"{type(exc).__name__}: {exc}"})
        return
    answer({"ready": True})
    for line in sys.stdin:
        call = json.loads(line)
        try:
            value = fn(call["row"], call["response"])
            json.dumps(value)
        except BaseException as exc:   # the call failed: the grader scores error_score and counts it
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
            answer({"error": f"{type(exc).__name__}: {str(exc)[:300]}{where}"})
            continue
        answer({"value": value})


if __name__ == "__main__":
    main()
