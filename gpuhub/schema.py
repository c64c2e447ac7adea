"""A small strict schema for the inventory: every problem is collected with its key path.

Specs describe the shape as data (like The Littlest JupyterHub's config schema): a `Section`
has fixed keys, a `MapOf` has user-chosen names, a `ListOf` repeats one spec, a `Value`
is a scalar with a type, an optional set of allowed values and an optional test. `check`
returns the value with defaults filled in; problems go to the list passed in, never raised,
so one run reports everything that is wrong.
"""
from __future__ import annotations

import copy
import difflib
import re
import reprlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

REQUIRED = object()

# Text a user was meant to replace: `{your-IP-here}`, `<hostname>`, `CHANGEME`, `TODO`...
_PLACEHOLDER = re.compile(r"\{[^{}]*\}|<[^<>]*>|\bCHANGE[-_ ]?ME\b|\bTODO\b|\bFIXME\b|\bXXX+\b",
                          re.IGNORECASE)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path or '(top level)'}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


MAX_SHOWN = 80  # characters of a value quoted in a message: a 50 MB hostname is not echoed whole
MAX_UNKNOWN_KEYS = 5


def quoted(value) -> str:
    """`value` as a message quotes it: repr, cut to its start (with its length) when long."""
    if isinstance(value, str) and len(value) > MAX_SHOWN - 20:
        return f"{value[:MAX_SHOWN - 20]!r}... ({len(value)} characters)"
    text = _short.repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = MAX_SHOWN, MAX_SHOWN, 6, 4, 2


def shown(key) -> str:
    """A key as a message shows it: what a terminal would not print (a newline, an escape
    sequence) is escaped."""
    text = str(key)
    text = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN - 20]}... ({len(text)} characters)"


def join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{shown(key)}" if path else shown(key)


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {bool: "true/false", int: "a whole number", float: "a number", str: "text",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class Spec:
    default: Any = REQUIRED

    def check(self, value, path: str, problems: list) -> Any:
        raise NotImplementedError

    def initial(self):
        return copy.deepcopy(self.default)


class Value(Spec):
    def __init__(self, kind, default=REQUIRED, choices=None,
                 test: Optional[Callable[[Any], str]] = None, hint: str = "", secret: bool = False,
                 braces: bool = False):
        self.kind, self.default, self.choices, self.test, self.hint = kind, default, choices, test, hint
        self.secret = secret  # never shown in a message: *** instead
        self.braces = braces  # a regular expression: `{3}` is a count there, not a placeholder

    def check(self, value, path, problems):
        if value is None and self.default is None:
            return None
        shown = "***" if self.secret else quoted(value)
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        # YAML booleans are ints to Python: `replicas: yes` must not pass as 1.
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            problems.append(Problem(path, f"expected {_type_name(self.kind)}, got {shown}", self.hint))
            return value
        if isinstance(value, str) and not self.braces and _PLACEHOLDER.search(value):
            problems.append(Problem(path, f"placeholder text left in: {shown}",
                                    self.hint or "replace it with this site's value"))
            return value
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            hint = did_you_mean(value, self.choices)
            problems.append(Problem(path, f"{shown} is not one of: {allowed}", hint))
            return value
        if self.test is not None:
            message = self.test(value)
            if message:
                problems.append(Problem(path, message, self.hint))
        return value


class ListOf(Spec):
    def __init__(self, item: Spec, default=(), min_items: int = 0, unique: bool = True):
        self.item, self.default, self.min_items, self.unique = item, list(default), min_items, unique

    def check(self, value, path, problems):
        if not isinstance(value, list):
            problems.append(Problem(path, f"expected a list, got {quoted(value)}"))
            return value
        if len(value) < self.min_items:
            problems.append(Problem(path, f"needs at least {self.min_items} item(s)"))
        result = [self.item.check(v, join(path, i), problems) for i, v in enumerate(value)]
        if self.unique:
            seen = set()
            for i, v in enumerate(value):
                if isinstance(v, (str, int)) and v in seen:
                    problems.append(Problem(join(path, i), f"{quoted(v)} is listed twice"))
                seen.add(v if isinstance(v, (str, int)) else id(v))
        return result


class Section(Spec):
    """A mapping with fixed keys; unknown keys are errors with a did-you-mean hint."""

    default = None  # an absent section is checked as empty, so its required keys are reported

    def __init__(self, fields: dict, unknown_hint: str = ""):
        self.fields = fields
        self.unknown_hint = unknown_hint  # said after "known keys" / "did you mean" for an unknown key

    def check(self, value, path, problems):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            problems.append(Problem(path, f"expected a mapping, got {quoted(value)}"))
            return value
        result = {}
        unknown = [key for key in value if key not in self.fields]
        for key in unknown[:MAX_UNKNOWN_KEYS]:
            hint = did_you_mean(key, self.fields) or "known keys: " + ", ".join(self.fields)
            if self.unknown_hint:
                hint += "; " + self.unknown_hint
            problems.append(Problem(join(path, key), "unknown key", hint))
        if len(unknown) > MAX_UNKNOWN_KEYS:
            problems.append(Problem(path or "(top level)", f"and {len(unknown) - MAX_UNKNOWN_KEYS} more unknown keys",
                                    "is this file an inventory? see the shipped hosts.yaml"))
        for key, spec in self.fields.items():
            if key in value or isinstance(spec, (Section, ListOrSection)):
                result[key] = spec.check(value.get(key), join(path, key), problems)
            elif spec.default is REQUIRED:
                problems.append(Problem(join(path, key), "is required", getattr(spec, "hint", "")))
            else:
                result[key] = spec.initial()
        return result


class MapOf(Spec):
    """A mapping whose keys are names the user chooses (hosts), each checked by `name_test`."""

    def __init__(self, item: Spec, name_test: Callable[[str], str], min_items: int = 0):
        self.item, self.name_test, self.min_items = item, name_test, min_items
        self.default = REQUIRED if min_items else {}

    def check(self, value, path, problems):
        if not isinstance(value, dict):
            problems.append(Problem(path, f"expected a mapping of names, got {quoted(value)}"))
            return value
        if len(value) < self.min_items:
            problems.append(Problem(path, f"needs at least {self.min_items} entry"))
        result = {}
        for name, item in value.items():
            message = self.name_test(name) if isinstance(name, str) else f"name {quoted(name)} is not text"
            if message:
                problems.append(Problem(join(path, name), message))
            result[name] = self.item.check(item, join(path, name), problems)
        return result


class ListOrSection(Spec):
    """Either of two forms: a list (checked by `listed`) or a mapping (checked by `section`, which
    also gives the default). Used where a newer list form sits beside an older mapping form."""

    def __init__(self, listed: "ListOf", section: Section):
        self.listed, self.section = listed, section
        self.default = None

    def check(self, value, path, problems):
        if isinstance(value, list):
            return self.listed.check(value, path, problems)
        return self.section.check(value, path, problems)


class TextOrSection(Spec):
    """A mapping, or a bare text standing for the mapping {key: text}."""

    def __init__(self, key: str, section: Section):
        self.key, self.section, self.default = key, section, REQUIRED

    def check(self, value, path, problems):
        return self.section.check({self.key: value} if isinstance(value, str) else value, path, problems)
