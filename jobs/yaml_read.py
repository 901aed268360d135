"""YAML bounded before it is decoded: size, nesting depth and alias expansion.

PyYAML builds an alias as a second reference to the anchored node, so a file under 1 kB of nested aliases
parses in microseconds into a graph that expands to 10^9 nodes the moment anything walks it (the codec, a
hash, an error message). The composer here counts aliases and depth while it builds the node graph, and the
graph's expanded size is counted (each shared node once per reference, memoised) before anything is built
from it. Nesting thousands of levels deep is refused at `MAX_DEPTH`, before Python's recursion limit.
`read_yaml` reads a file's mapping this way and words every problem as one ConfigError line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mst.config import ConfigError
from mst.inputs import InputError, read_regular

MAX_YAML_BYTES = 1 << 20
"""A preset, profile, sweep or config file is a few kilobytes."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists (configs and sweeps nest 5 deep)."""
MAX_ALIASES = 1000
"""Aliases (`*name`) per document."""
MAX_NODES = 100_000
"""Nodes once every alias is expanded (the paper preset has about 200)."""


class _Bound(Exception):
    """A document beyond one of the bounds (the reason, without the file)."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: Any):
        super().__init__(stream)
        self.depth = 0
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Bound(f"uses more than {MAX_ALIASES} aliases")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Bound(f"nests more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of `root` with every alias expanded; stops counting past MAX_NODES. Iterative: depth is bounded
    already, but a shared node is counted once per reference through the memo, never walked twice."""
    memo: dict[int, int] = {}
    todo: list[tuple[yaml.Node, bool]] = [(root, False)]
    while todo:
        node, children_done = todo.pop()
        if id(node) in memo:
            continue
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            memo[id(node)] = 1
            continue
        if children_done:
            memo[id(node)] = min(MAX_NODES + 1, 1 + sum(memo[id(c)] for c in children))
        else:
            todo.append((node, True))
            todo.extend((c, False) for c in children if id(c) not in memo)
    return memo[id(root)]


def load_yaml(text: str | bytes, what: str) -> Any:
    """The YAML document in `text`, bounded; `what` names it in errors ("sweep file sweeps/x.yaml").
    yaml.YAMLError propagates for bad syntax (callers word it); InputError for a document beyond a bound."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > MAX_NODES:
            raise _Bound(f"expands to more than {MAX_NODES} values once its aliases are expanded")
        return loader.construct_document(node)
    except _Bound as err:
        raise InputError(f"{what} {err}; write the values out plainly (a few anchors at most)") from None
    except RecursionError:
        raise InputError(f"{what} nests too deeply; write the values out plainly") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path, what: str) -> Any:
    """load_yaml of the regular file `path`, at most MAX_YAML_BYTES (mst.inputs.read_regular's checks)."""
    return load_yaml(read_regular(path, what, MAX_YAML_BYTES), f"{what} {path}")


def read_yaml(path: Path, what: str) -> dict:
    """The YAML mapping in the regular file `path` (a preset, profile, sweep or budgets file), bounded as above;
    a parse error, a bound passed, an unreadable file or a document that is no mapping is one ConfigError line."""
    try:
        data = read_yaml_file(path, what)  # bytes: a file that is not UTF-8 is a YAMLError too
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} {path}{where} is not valid YAML; fix its syntax") from None
    except InputError as err:
        raise ConfigError(str(err)) from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}; make it readable or give "
                          "another file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must be a mapping of keys, got {type(data).__name__}")
    return data
