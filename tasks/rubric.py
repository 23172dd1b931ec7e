"""The rubric: the criteria a task's judges apply, read from one YAML file (``task.rubric``).

The file is the single written statement of what "better" means for a task.
The embedding judge embeds its sentences, the LLM and HTTP judges put it in
their prompt, and later Label Studio's instructions and Constitutional AI read
it too. Format::

    name: my-task
    instructions: optional text shown before the criteria
    criteria:
      - name: helpful
        description: The reply answers the question that was asked.   # what good looks like
        violation: The reply ignores the question.                    # optional: what bad looks like
        weight: 2.0
    principles:                     # optional: Constitutional AI's critique and revision requests
      - name: helpful
        critique: Point out where the reply fails to answer the question.
        revision: Rewrite the reply so that it answers the question.

Without ``principles``, Constitutional AI derives one per criterion from its
description (:meth:`Rubric.constitution`).

Every criterion needs a name, a description and a positive weight. A bad file
stops the run with a message naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ConfigError
from tasks.yamlfile import read_yaml


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    weight: float = 1.0
    violation: str | None = None


@dataclass(frozen=True)
class Principle:
    name: str
    critique: str      # asks the critic where the reply falls short
    revision: str      # asks the critic to rewrite the reply accordingly


@dataclass(frozen=True)
class Rubric:
    name: str
    criteria: tuple[Criterion, ...]
    instructions: str = ""
    principles: tuple[Principle, ...] = ()

    def constitution(self) -> tuple[Principle, ...]:
        """The principles Constitutional AI applies: the file's own, else one per criterion."""
        return self.principles or tuple(
            Principle(c.name, f"Point out where the assistant's reply falls short of this: {c.description}",
                      f"Rewrite the assistant's reply so that it meets this: {c.description}")
            for c in self.criteria)

    def as_text(self) -> str:
        """The rubric as the numbered list a judge's prompt shows."""
        lines = [self.instructions.strip()] if self.instructions.strip() else []
        for i, c in enumerate(self.criteria, start=1):
            lines.append(f"{i}. {c.name} (weight {c.weight:g}): {c.description}")
        return "\n".join(lines)


def parse_rubric(raw, source: str) -> Rubric:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping with 'criteria'")
    unknown = sorted(set(raw) - {"name", "instructions", "criteria", "principles"})
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown key (known: name, instructions, criteria, principles)")
    items = raw.get("criteria")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: criteria: must be a non-empty list")
    criteria, seen = [], set()
    for i, item in enumerate(items):
        key = f"{source}: criteria[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{key}: must be a mapping with name, description and weight")
        extra = sorted(set(item) - {"name", "description", "weight", "violation"})
        if extra:
            raise ConfigError(f"{key}.{extra[0]}: unknown key (known: name, description, weight, violation)")
        for field in ("name", "description"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise ConfigError(f"{key}.{field}: must be a non-empty string")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"{key}.weight: must be a number > 0, got {weight!r}")
        violation = item.get("violation")
        if violation is not None and (not isinstance(violation, str) or not violation.strip()):
            raise ConfigError(f"{key}.violation: must be a non-empty string when given")
        if item["name"] in seen:
            raise ConfigError(f"{key}.name: duplicate criterion {item['name']!r}")
        seen.add(item["name"])
        criteria.append(Criterion(item["name"].strip(), item["description"].strip(), float(weight), violation))
    instructions = raw.get("instructions") or ""
    if not isinstance(instructions, str):
        raise ConfigError(f"{source}: instructions: must be a string")
    return Rubric(str(raw.get("name") or Path(source).stem), tuple(criteria), instructions,
                  _principles(raw.get("principles"), source))


def _principles(items, source: str) -> tuple[Principle, ...]:
    if items is None:
        return ()
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: principles: must be a non-empty list when given")
    out = []
    for i, item in enumerate(items):
        key = f"{source}: principles[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{key}: must be a mapping with name, critique and revision")
        extra = sorted(set(item) - {"name", "critique", "revision"})
        if extra:
            raise ConfigError(f"{key}.{extra[0]}: unknown key (known: name, critique, revision)")
        for field in ("name", "critique", "revision"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise ConfigError(f"{key}.{field}: must be a non-empty string")
        out.append(Principle(item["name"].strip(), item["critique"].strip(), item["revision"].strip()))
    return tuple(out)


def load_rubric(path: str | Path) -> Rubric:
    path = Path(path)
    return parse_rubric(read_yaml(path, "task.rubric names it"), str(path))
