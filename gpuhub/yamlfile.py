"""Read a YAML file a person wrote (the inventory, secrets.yaml), with bounds, or say why not.

`yaml.safe_load` alone takes anything: a key given twice (it keeps the last), a few hundred bytes
of aliases that expand to gigabytes when shown, 100 000 levels of nesting (a RecursionError), a
list as a key (a TypeError in our own checks), a device such as /dev/zero. Here every one of
those is a `YAMLProblem` naming the file and, where there is one, the line and column. YAML merge
keys (`<<: *defaults`) work as in plain `safe_load`; a key given twice in the same mapping is
still refused.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

MAX_BYTES = 1 << 20      # an inventory for a few workstations is a few KB
MAX_DEPTH = 32           # sections within sections: the inventory needs 5
MAX_NODES = 20_000       # values after every alias is expanded


class YAMLProblem(ValueError):
    def __init__(self, message: str, line: int = None, column: int = None):
        where = f" at line {line}, column {column}" if line else ""
        super().__init__(f"{message}{where}")


class FileProblem(ValueError):
    """A path that names no regular file of a sensible size: its message says what it is instead."""


def regular_file(path: Path, what: str, max_bytes: int) -> os.stat_result:
    """The stat of `path` (links followed) when it is a regular file of at most `max_bytes`.
    A device (/dev/zero), a pipe or a socket is never read: reading one may block or never end."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise FileProblem(f"cannot read {path}: {e.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise FileProblem(f"{path} is a folder, not {what}")
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem(f"{path} is not a regular file (a device or a pipe?), not {what}")
    if info.st_size > max_bytes:
        raise FileProblem(f"{path} is {info.st_size} bytes: more than {max_bytes} is not {what}")
    if not os.access(path, os.R_OK):
        raise FileProblem(f"cannot read {path}: {os.strerror(13)}")
    return info


def read_text(path: Path, what: str = "a YAML file") -> str:
    """The file's text: a regular file, at most MAX_BYTES, UTF-8."""
    try:
        regular_file(path, what, MAX_BYTES)
    except FileProblem as e:
        raise YAMLProblem(str(e)) from None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise YAMLProblem(f"cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_BYTES:
        raise YAMLProblem(f"{path} is more than {MAX_BYTES} bytes: not {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        raise YAMLProblem(f"{path} is not UTF-8 text", before.count(b"\n") + 1,
                          e.start - (before.rfind(b"\n") + 1) + 1) from None


MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader with the bounds above, keys that are text or numbers, no key given twice."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YAMLProblem(f"nested more than {MAX_DEPTH} levels deep", mark.line + 1, mark.column + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                continue  # `<<: *defaults`: flattened by SafeConstructor, explicit keys win
            mark = key_node.start_mark
            if not isinstance(key_node, yaml.ScalarNode):
                raise YAMLProblem("a key must be a name, not a list or a mapping", mark.line + 1, mark.column + 1)
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                shown = str(key) if len(str(key)) <= 60 else f"{str(key)[:60]}..."
                raise YAMLProblem(f"key {shown!r} is given twice", mark.line + 1, mark.column + 1)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded(node, memo: dict) -> int:
    """How many values `node` stands for once every alias is expanded (capped at MAX_NODES + 1)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_NODES + 1  # a cycle counts as too many
    total = 1
    children = (node.value if isinstance(node, yaml.SequenceNode) else
                [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    for child in children:
        total += _expanded(child, memo)
        if total > MAX_NODES:
            break
    memo[id(node)] = min(total, MAX_NODES + 1)
    return memo[id(node)]


def loads(text: str):
    """One YAML document from `text`, within the bounds; None when empty."""
    loader = None
    try:
        loader = _Loader(text)  # its reader refuses control characters already
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded(node, {}) > MAX_NODES:
            raise YAMLProblem(f"expands to more than {MAX_NODES} values (YAML aliases?): not an inventory")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise YAMLProblem(f"invalid YAML: {problem}", mark.line + 1 if mark else None,
                          mark.column + 1 if mark else None) from None
    except RecursionError:
        raise YAMLProblem(f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()


def load(path: Path, what: str = "a YAML file"):
    return loads(read_text(path, what))
