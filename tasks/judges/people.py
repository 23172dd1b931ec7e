"""Judge ``label_studio``: people compare candidate and champion, blind, in a Label Studio project.

``evaluate`` hands it the held-out comparisons like any judge. Each becomes a
task showing the conversation and the two responses in an order drawn per task
(``tasks/labelers/label_studio.py``): nothing shows which policy wrote which.
The stage waits as the label stage does (the Prefect flow pauses; ``dvc repro``
polls or stops). A comparison's probability for A is its share of votes, a tie
counting one half; a comparison nobody answered by the timeout counts as a tie
(0.5), which only pulls the win-rate towards 0.5 (never past the gate), and is
counted in ``stats['unanswered']``; when nobody answered at all, the stage stops
and nothing is promoted. Naming this judge in
``promote.winrate_source`` makes the people's win-rate, with its bootstrap CI
by prompt, the gate.
"""

from __future__ import annotations

import hashlib

from tasks.judging import Judge, Verdicts
from tasks.labelers.label_studio import render_prompt, run_project, swapped
from tasks.prompting import Prompt


class PeopleJudge(Judge):
    shardable = False          # one Label Studio project for the whole list

    def __init__(self, name: str, cfg, rubric, studio):
        super().__init__()
        self.name, self.cfg, self.rubric, self.studio = f"human:{name}", cfg, rubric, studio

    def compare(self, prompts: list[Prompt], a: list[str], b: list[str], keys: list | None = None,
                rows: list[dict] | None = None) -> Verdicts:
        tasks, meaning, order = [], {}, []
        for i, (p, x, y) in enumerate(zip(prompts, a, b)):
            shown = render_prompt(p)
            key = hashlib.sha1("\x1f".join((shown, x, y, str(i))).encode()).hexdigest()[:16]
            first, second = (y, x) if swapped(self.cfg.seed, key) else (x, y)
            tasks.append({"key": key, "prompt": shown, "a": first, "b": second})
            meaning[key] = {"prompt_id": f"c{i}", "a_id": "a", "b_id": "b", "a": x, "b": y}
            order.append(key)
        rows, stats = run_project("evaluate", "comparison", tasks, meaning, self.cfg, self.studio, self.rubric)
        votes: dict = {}
        for r in rows:
            votes.setdefault(r["prompt_id"], []).append({"a": 1.0, "b": 0.0, "tie": 0.5}[r["choice"]])
        p_a, a_wins = [], []
        for i in range(len(order)):
            v = votes.get(f"c{i}")
            p = sum(v) / len(v) if v else 0.5
            p_a.append(p)
            a_wins.append(None if p == 0.5 else p > 0.5)
        self.stats.update(annotations=float(len(rows)), unanswered=float(sum(f"c{i}" not in votes
                                                                              for i in range(len(order)))),
                          annotators=float(len({r["annotator"] for r in rows})), waited_s=float(stats["waited_s"]),
                          timed_out=float(stats["outcome"] == "timeout"))
        return Verdicts(p_a, a_wins)
