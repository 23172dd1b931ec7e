"""YAML files read strictly: a key written twice, a tab in the indentation or an alias bomb is an error that
names the file and the line (params.yaml, rubrics, Label Studio settings)."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml

from tasks.errors import ConfigError

MAX_YAML_NODES = 100_000      # a params file expands to far fewer; an alias bomb to billions


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):     # libyaml's parser where PyYAML has it
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (YAML loaders keep the last one
    silently) and reads numbers as YAML 1.2 and DVC do: ``1e-4`` is a float, not the string PyYAML's YAML 1.1
    makes of it."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue                        # SafeLoader refuses it below, with its own message
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: {key}: written twice in one mapping "
                                  f"(first on line {seen[key] + 1}); YAML would silently keep the last")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def _expanded_size(node, memo: dict) -> int:
    """Nodes in ``node`` once every alias is expanded (each node counted once per place it appears)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1                         # a recursive alias counts once
    size = 1
    if isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(v, memo) for v in node.value)
    memo[id(node)] = min(size, MAX_YAML_NODES + 1)
    return memo[id(node)]


def read_yaml(path: Path, missing: str) -> Any:
    """A YAML file's content; a missing file, bad YAML, a tab in the indentation, a key written twice or a
    document whose aliases expand past ``MAX_YAML_NODES`` nodes is a ConfigError naming the file and the
    line (``missing`` says what to do when there is no file)."""
    if not path.exists():
        raise ConfigError(f"{path}: file not found ({missing})")
    if path.is_dir():
        raise ConfigError(f"{path}: a folder where the params file is expected")
    text = path.read_text(encoding="utf-8-sig")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line[:len(line) - len(line.lstrip(" \t"))].count("\t"):
            raise ConfigError(f"{path}: line {lineno}: a tab in the indentation; YAML indents with spaces only")
    try:
        loader = StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
                raise ConfigError(f"{path}: its aliases (*name) expand to more than {MAX_YAML_NODES:,} values; "
                                  "refused (an alias bomb?)")
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
