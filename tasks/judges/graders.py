"""Graders: judges that score one response on its own, by a rule, a similarity, code or a model's score, often
against a reference field of the prompt's row. Each is a kind of the ``judges:`` section with its own typed
config (``tasks/judges/configs.py``)::

    judges:
      correct: {kind: string_check, reference: answer, extract: 'Answer: (-?\\d+)'}
      format:  {kind: regex, pattern: '^Answer: -?\\d+$', mode: fullmatch}
      close:   {kind: text_similarity, metric: rougeL, reference: reference}
      tests:   {kind: python, function: my_pkg.grading:run_tests, timeout: 5}
      rubric:  {kind: score_model, judge: api, samples: 3, temperature: 0.7}
      total:   {kind: multi, formula: 0.7 * correct + 0.3 * format}

A grader reads the prompt rows' fields that its config names (``fields``); the stages pass the rows
(``Judge.score(prompts, responses, rows)``). Two responses compare as ``sigmoid(scale * (s_a - s_b))``, a tie
when the scores are equal. A response *passes* when its score is at least ``pass_threshold``.

``python`` runs in worker processes (``tasks/judges/python_grader.py``); ``score_model`` asks an ``llm`` or
``http`` judge's model (``tasks/judges/score_model.py``).
"""

from __future__ import annotations

import re

from tasks.errors import ConfigError
from tasks.formula import ANY_NAME, evaluate, names_in, parse
from tasks.judges.embedding import embed
from tasks.judging import ScoringJudge
from tasks.metric_modules import metric


def reference_values(rows, n: int, field: str, judge: str) -> list[list[str]]:
    """Per item, the acceptable strings in the rows' ``field`` (a string, or a list of strings). ConfigError when
    the caller has no rows or a row lacks the field (the prompts' validation refuses such rows before a cycle
    reaches a grader; this names what went wrong where it did not run)."""
    if rows is None:
        raise ConfigError(f"judges.{judge}: reads the prompt rows' field {field!r}, but is used where no prompt "
                          "rows are at hand (graders with a reference field reward and evaluate the cycle's "
                          "prompts; use a literal or another judge here)")
    out = []
    for i, row in enumerate(rows[:n]):
        value = (row or {}).get(field)
        values = value if isinstance(value, list) else [value]
        if value is None or not values or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                                   for v in values):
            raise ConfigError(f"judges.{judge}: prompt {(row or {}).get('id', i)!r} has no usable {field!r} field "
                              f"(a string or a list of strings), got {value!r}")
        out.append([str(v) for v in values])
    return out


class Grader(ScoringJudge):
    """A scoring judge with a ``pass_threshold``; subclasses implement ``grade(responses, rows)``."""

    def __init__(self, name: str, cfg):
        super().__init__()
        self.key, self.name, self.cfg, self.scale = name, f"ai:{name}", cfg, cfg.scale
        self.pass_threshold = cfg.pass_threshold

    def score(self, prompts, responses, rows=None) -> list[float]:
        if rows is not None and len(rows) != len(responses):
            raise ValueError(f"judge {self.key}: {len(rows)} prompt rows for {len(responses)} responses")
        return self.grade(prompts, [r.strip() for r in responses], rows)

    def grade(self, prompts, responses: list[str], rows) -> list[float]:
        raise NotImplementedError


def string_check(operation: str, response: str, target: str, ignore_case: bool) -> bool:
    """Whether ``response`` meets ``target`` by ``operation`` (``configs.STRING_OPERATIONS``)."""
    if ignore_case:
        response, target = response.casefold(), target.casefold()
    if operation == "equals":
        return response == target
    if operation == "not_equals":
        return response != target
    if operation == "contains":
        return target in response
    if operation == "not_contains":
        return target not in response
    if operation == "starts_with":
        return response.startswith(target)
    if operation == "ends_with":
        return response.endswith(target)
    raise ValueError(f"unknown operation {operation!r}")


def extracted(pattern: re.Pattern | None, response: str) -> str | None:
    """The part of ``response`` a grader compares: the first match of ``pattern`` (its first group if it has
    groups), the whole response without a pattern, None when the pattern does not match."""
    if pattern is None:
        return response
    m = pattern.search(response)
    if m is None:
        return None
    return m.group(1) if pattern.groups else m.group(0)     # a group that took no part: no match (None)


class StringCheckGrader(Grader):
    def __init__(self, name: str, cfg):
        super().__init__(name, cfg)
        self.pattern = re.compile(cfg.extract) if cfg.extract is not None else None
        self.fields = (cfg.reference,) if cfg.reference else ()

    def grade(self, prompts, responses, rows):
        cfg = self.cfg
        targets = (reference_values(rows, len(responses), cfg.reference, self.key) if cfg.reference
                   else [[cfg.literal]] * len(responses))
        out = []
        for response, accepted in zip(responses, targets):
            got = extracted(self.pattern, response)
            if got is not None:
                got = got.strip()
            # "not" operations hold when the response meets none of the strings; the others when it meets one
            negative = cfg.operation.startswith("not_")
            hits = [got is not None and string_check(cfg.operation, got, t.strip(), cfg.ignore_case) for t in accepted]
            ok = all(hits) if negative else any(hits)
            out.append(cfg.match_score if ok else cfg.miss_score)
        return out


class RegexGrader(Grader):
    def __init__(self, name: str, cfg):
        super().__init__(name, cfg)
        self.pattern = re.compile(cfg.pattern, cfg.flags())

    def grade(self, prompts, responses, rows):
        cfg = self.cfg
        find = self.pattern.fullmatch if cfg.mode == "fullmatch" else self.pattern.search
        return [cfg.match_score if find(r) else cfg.miss_score for r in responses]


class TextSimilarityGrader(Grader):
    def __init__(self, name: str, cfg):
        super().__init__(name, cfg)
        self.fields = (cfg.reference,)
        self.batch_size = cfg.batch_size
        if cfg.metric != "cosine":
            self.module = metric("text_similarity")

    def grade(self, prompts, responses, rows):
        cfg = self.cfg
        refs = reference_values(rows, len(responses), cfg.reference, self.key)
        if not responses:
            return []
        if cfg.metric == "cosine":
            return self._cosine(responses, refs)
        return [float(s) for s in self.module.compute(predictions=responses, references=refs, metric=cfg.metric,
                                                      ignore_case=cfg.ignore_case)["scores"]]

    def _cosine(self, responses, refs) -> list[float]:
        flat = [r for group in refs for r in group]
        e_resp = embed([r or " " for r in responses], self.cfg.batch_size, self.cfg.max_length)
        e_ref = embed(flat, self.cfg.batch_size, self.cfg.max_length)
        out, at = [], 0
        for i, group in enumerate(refs):
            cos = (e_ref[at:at + len(group)] @ e_resp[i]).max()
            at += len(group)
            out.append(min(1.0, max(0.0, float(cos))) if responses[i] else 0.0)
        return out


class MultiGrader(Grader):
    """``formula`` over the member graders' scores, each member scoring every response once."""

    def __init__(self, name: str, cfg, members: dict):
        super().__init__(name, cfg)
        self.members = members
        self.tree = parse(cfg.formula, set(members))
        self.fields = tuple(dict.fromkeys(f for m in members.values() for f in m.fields))
        self.shardable = all(m.shardable for m in members.values())

    def score(self, prompts, responses, rows=None) -> list[float]:
        per = {n: m.score(prompts, responses, rows) for n, m in self.members.items()}
        for n, m in self.members.items():
            self.stats.update({f"{n}.{k}": v for k, v in m.stats.items()})
        return [evaluate(self.tree, {n: per[n][i] for n in per}) for i in range(len(responses))]


def formula_members(formula: str) -> list[str]:
    """The judge names a (syntactically valid) formula reads."""
    return names_in(parse(formula, ANY_NAME))
