"""The worker process of the ``python`` grader (``tasks/judges/python_grader.py``). Standard library only: it
is started as a script, with a trimmed environment, and never imports the project.

It caps its own address space (``RLIMIT_AS``) first, moves the protocol onto private copies of its stdin and
stdout (the function's own stdin is /dev/null, its stdout is stderr), then imports the user's function and
answers ``{"ready": true}`` or ``{"error": ...}``. Then, for each JSON line ``{"seq": n, "row": ..., "response":
...}`` it writes one JSON line: ``{"seq": n, "value": <what the function returned>}`` or ``{"seq": n, "error":
"<type>: <text>"}``. The parent enforces the time limit by stopping the process group.
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
    # The protocol runs on private copies of the pipes. File descriptors 0 and 1 become /dev/null and stderr, so
    # nothing the function (or a C extension, or a child process it starts) reads or writes there can reach the
    # protocol: print() and os.system("echo 1") both end up on stderr.
    requests = os.fdopen(os.dup(0), "r")
    out = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdin, sys.stdout = open(os.devnull), sys.stderr

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
    for line in requests:
        call = json.loads(line)
        seq = call["seq"]
        try:
            value = fn(call["row"], call["response"])
            json.dumps(value)
        except BaseException as exc:   # the call failed: the grader scores error_score and counts it
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" ({tb[-1].filename}:{tb[-1].lineno})" if tb else ""
            answer({"seq": seq, "error": f"{type(exc).__name__}: {str(exc)[:300]}{where}"})
            continue
        answer({"seq": seq, "value": value})


if __name__ == "__main__":
    main()
