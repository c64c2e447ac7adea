"""Colours on a terminal, none otherwise: not when NO_COLOR is set to anything but empty
(https://no-color.org), not for TERM=dumb, not when the stream is a file or a pipe."""
from __future__ import annotations

import os

CODES = {"green": "32", "yellow": "33", "red": "31", "bold red": "1;31", "cyan": "36", "blue": "34", "dim": "2"}
# What a word in a plan or a recap means, by colour: fine, will change, cannot go on, waits.
WORDS = {"ok": "green", "change": "yellow", "verify": "blue", "pending": "cyan", "blocked": "red",
         "error": "bold red", "changed": "yellow", "failed": "bold red", "unreachable": "bold red",
         "interrupted": "red", "DESTRUCTIVE": "bold red", "restarts K3s": "yellow"}


def enabled(stream) -> bool:
    if os.environ.get("NO_COLOR", "") != "" or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file at all
        return False


def paint(text: str, word: str, on: bool) -> str:
    """`text` (which may be `word` padded to a column) in `word`'s colour when `on`."""
    code = CODES.get(WORDS.get(word.strip(), ""), "")
    return f"\033[{code}m{text}\033[0m" if on and code else text
