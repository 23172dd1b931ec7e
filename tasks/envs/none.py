"""Environment ``none``: the user's own task. No generator, no hidden truth.

Its corpus is whatever the user points ``corpus.texts`` and ``corpus.demos`` at
(JSONL; texts: ``text``; demos: ``prompt`` or ``messages``, and ``response``),
copied into ``data/corpus/`` so that ``bootstrap`` can train a tiny policy from
them. With ``policy.base_model`` set, neither is needed.
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import ConfigError, DataError
from tasks.io import read_jsonl, write_jsonl
from tasks.prompting import conversation_problems


class UserTask:
    name = "none"
    has_truth = False

    def write_corpus(self, cfg, out_dir: Path) -> dict:
        counts = {"texts": 0, "demos": 0}
        for key, required in (("texts", ("text",)), ("demos", ("response",))):
            src = getattr(cfg, key)
            if src is None:
                continue
            rows = read_jsonl(src)
            for i, r in enumerate(rows, start=1):
                for col in required:
                    if not isinstance(r.get(col), str) or not r[col].strip():
                        raise DataError(src, f"'{col}' is a non-empty string", column=col, rows=[(i, repr(r)[:80])])
                if key == "demos":
                    if "messages" in r:
                        problems = conversation_problems(r["messages"])
                        if problems:
                            raise DataError(src, "valid conversation", column="messages",
                                            rows=[(i, problems[0])])
                    elif not isinstance(r.get("prompt"), str):
                        raise DataError(src, "a demo has 'prompt' or 'messages'", column="prompt",
                                        rows=[(i, repr(r)[:80])])
            write_jsonl(out_dir / f"{key}.jsonl", rows)
            counts[key] = len(rows)
        return counts

    def annotator(self, truth_cfg, seed: int):
        raise ConfigError("task.env: none has no simulated annotator (no hidden truth)")


ENVIRONMENT = UserTask()
