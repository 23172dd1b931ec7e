"""AI judging sharded across workers (``scale.runner``): the same judge, built again on each worker.

``build_judge`` wraps a judge in :class:`ShardedJudge` when the stage shards
(label and evaluate, with ``scale.runner`` other than ``local``). Its ``score``
and ``compare`` cut their lists into contiguous shards at multiples of the
judge's own batch (``Judge.batch_size``), run one shard per worker
(``tasks/workers.py``), and join the results in order. A worker builds the judge
from its ``judges:`` entry, so the judge's batches, and therefore its numbers,
are the unsharded run's. The embedding judge also embeds each distinct prompt
once per call, so a shard's prompt batches differ from the whole run's: its
sharded scores agree to float rounding, not to the byte.

The stats of the shards (position bias, retries, ...) are joined by
``merge_stats``: counts add up, rates are weighted by each shard's size.
"""

from __future__ import annotations

from tasks.judging import Judge, Verdicts
from tasks.workers import batch_shards, run_shards

# Stats that count things (summed over shards); every other stat is a rate (weighted mean by shard size).
COUNTS = ("comparisons", "retries", "unparsed", "calls", "errors", "crashes", "timeouts", "samples")


def merge_stats(parts: list[tuple[dict, int]]) -> dict:
    """Join the ``(stats, n_items)`` of each shard: a key ending in one of ``COUNTS`` is summed, any other is
    the mean of the shards' values weighted by their item counts (shards that lack the key do not count)."""
    out: dict = {}
    for key in dict.fromkeys(k for stats, _ in parts for k in stats):
        have = [(stats[key], n) for stats, n in parts if key in stats]
        if key.split(".")[-1] in COUNTS:
            out[key] = float(sum(v for v, _ in have))
        else:
            total = sum(n for _, n in have)
            out[key] = sum(v * n for v, n in have) / total if total else sum(v for v, _ in have) / len(have)
    return out


def judge_spans(n_items: int, batch_size: int, workers: int) -> list[tuple[int, int]]:
    return [(start, stop) for _, start, stop in batch_shards(n_items, batch_size, workers)]


def score_shard(build, name: str, ctx, prompts: list, responses: list, rows=None) -> tuple[list[float], dict]:
    judge = build(name, ctx)
    return judge.score(prompts, responses, rows), dict(judge.stats)


def compare_shard(build, name: str, ctx, prompts: list, a: list, b: list, keys, rows=None) -> tuple:
    judge = build(name, ctx)
    verdicts = judge.compare(prompts, a, b, keys, rows)
    return verdicts.p_a, verdicts.a_wins, dict(judge.stats), verdicts.first


class ShardedJudge(Judge):
    """``inner``'s verdicts and scores, computed by ``scale.workers`` copies of it on the runner's workers.

    ``ctx`` is the plain (picklable, unsharded) context the workers build the judge from. Everything but
    ``score`` and ``compare`` (a scoring judge's ``compare_scored``, a judge's ``generate``) is ``inner``'s own.
    """

    def __init__(self, inner: Judge, key: str, ctx, scale, build):
        super().__init__()
        self.inner, self.key, self.ctx, self.scale = inner, key, ctx, scale
        self.build = build                   # ``build(key, ctx)``: the judge, as each worker makes its copy
        self.name, self.scores_responses, self.batch_size = inner.name, inner.scores_responses, inner.batch_size
        self.fields, self.pass_threshold = inner.fields, inner.pass_threshold
        self.compared = 0                    # comparisons so far: ``stats`` joins every call's shards
        self.scored = 0                      # responses scored so far

    def __getattr__(self, attr):
        if attr == "inner":                     # not set yet (unpickling): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def _spans(self, n: int):
        return judge_spans(n, self.batch_size, self.scale.workers)

    def score(self, prompts, responses, rows=None) -> list[float]:
        spans = self._spans(len(responses))
        calls = [dict(build=self.build, name=self.key, ctx=self.ctx, prompts=prompts[i:j], responses=responses[i:j],
                      rows=None if rows is None else rows[i:j]) for i, j in spans]
        parts = run_shards(score_shard, calls, self.scale)
        # a grader's counts (calls, errors, timeouts, unparsed answers) over every shard of every call
        self.stats = merge_stats([(self.stats, self.scored),
                                  *((stats, j - i) for (_, stats), (i, j) in zip(parts, spans))])
        self.scored += len(responses)
        return [s for scores, _ in parts for s in scores]

    def compare(self, prompts, a, b, keys=None, rows=None) -> Verdicts:
        spans = self._spans(len(a))
        calls = [dict(build=self.build, name=self.key, ctx=self.ctx, prompts=prompts[i:j], a=a[i:j], b=b[i:j],
                      keys=None if keys is None else keys[i:j], rows=None if rows is None else rows[i:j])
                 for i, j in spans]
        parts = run_shards(compare_shard, calls, self.scale)
        self.stats = merge_stats([(self.stats, self.compared),
                                  *((stats, j - i) for (_, _, stats, _), (i, j) in zip(parts, spans))])
        self.compared += len(a)
        first = None if not parts or any(part[3] is None for part in parts) else [f for part in parts for f in part[3]]
        return Verdicts([p for part in parts for p in part[0]], [w for part in parts for w in part[1]], first)
