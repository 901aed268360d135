"""Reading what a user, a colleague or a killed process left behind: bounded, and regular files only.

Parsers check syntax; these readers also bound what parses. A FIFO, a device or a directory planted where a
record, cache, manifest or config is expected is refused before a byte is read (opening a FIFO for reading
would wait for a writer; reading a device may never end), a file larger than its limit is refused before it
is read into memory, and JSON is refused when it nests deeper than `MAX_DEPTH` or holds an integer wider than
64 bits (Python would parse a 100,000-digit integer, then fail far from the file when it is formatted).
Every refusal is one `InputError` line naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import re
import stat
from itertools import accumulate
from pathlib import Path
from typing import Any

MAX_BYTES = 64 << 20
"""The default size limit of one file (records and configs are kilobytes; the report cache of 10,000
records a few megabytes)."""
MAX_JSONL_BYTES = 256 << 20
"""The size limit of a JSON-lines log: a manifest line is about 150 bytes (a million submissions), a
pre-training metrics.jsonl line about 285 (a 300-epoch paper run, 375,300 steps, is 12 MB at the default
log_every of 10 and 107 MB logged at every step)."""
MAX_DEPTH = 64
"""The deepest nesting of lists and mappings a record, cache or config may hold (records nest 4 deep)."""
MAX_INT_DIGITS = 19
"""Digits of the widest integer accepted (int64: values reach numpy and torch)."""


class InputError(ValueError):
    """A file or value that cannot be used (one line: what is wrong; how to fix it). `reason` is what is
    wrong alone, without the file's name or the fix, for a caller that names the file its own way."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class NotJSON(InputError):
    """Text that is not JSON at all (a torn or foreign file); `reason` is the parser's own words."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_irregular(path: Path, mode: int, what: str) -> None:
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path} is {_kind(mode)}, not a regular file; remove it (or replace it with "
                         "the file it should be), then run the command again",
                         f"is {_kind(mode)}, not a regular file")


def read_regular(path: str | Path, what: str, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file `path`, at most `limit`; InputError for anything else.

    FileNotFoundError (and other OSErrors of the file system) propagate: callers decide what absence means."""
    path = Path(path)
    _refuse_irregular(path, os.stat(path).st_mode, what)  # before open: opening a FIFO would wait for a writer
    # O_NONBLOCK: a FIFO swapped in after the stat still opens at once, and is refused below
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        _refuse_irregular(path, st.st_mode, what)
        if st.st_size > limit:
            raise InputError(f"{what} {path} is {st.st_size} bytes, more than the {limit} a {what} may hold; "
                             "it is not a file this toolkit wrote: remove or replace it",
                             f"is {st.st_size} bytes, more than the {limit} a {what} may hold")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # grew while being read
            raise InputError(f"{what} {path} is more than {limit} bytes; remove or replace it")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise InputError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


_DECODER = json.JSONDecoder(parse_int=_int)


def depth(value: Any) -> int:
    """How deep lists and mappings nest in `value` (a scalar: 0), without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:  # deeper is refused anyway: stop walking there
            todo.extend((child, level + 1) for child in children)
    return deepest


def _loads(text: str) -> Any:
    """json.loads(text, parse_int=_int) with one decoder for every call (json.loads builds a new one per call
    when given a hook: a third of the time of a long log's lines)."""
    if text.startswith("\ufeff"):  # as json.loads words it
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _bracket_depth(text: str) -> int:
    """An upper bound of the JSON nesting of `text` (brackets inside strings count too), in C loops when the
    text holds few brackets."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return text.count("[") + text.count("{")
    brackets = _NOT_BRACKET.sub("", text)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def parse_json(text: str | bytes, what: str, where: str | Path) -> Any:
    """JSON from `text` with integers of at most 19 digits and at most MAX_DEPTH levels; InputError naming
    `where` otherwise, and for text that is not JSON (json.JSONDecodeError is a ValueError too)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if _bracket_depth(text) > MAX_DEPTH:
        value = None  # the exact check below, on what parses (brackets in strings made the count high)
        try:
            value = _loads(text)
        except (ValueError, RecursionError):
            pass
        if value is None or depth(value) > MAX_DEPTH:
            raise InputError(f"{what} {where} nests more than {MAX_DEPTH} levels deep (or is not JSON); it is "
                             "not a file this toolkit wrote: remove or replace it",
                             f"nests more than {MAX_DEPTH} levels deep (or is not JSON)")
        return value
    try:
        return _loads(text)
    except InputError as err:
        raise InputError(f"{what} {where} holds {err}; remove or replace it", f"holds {err}") from None
    except ValueError as err:
        reason = (str(err).splitlines() or ["not JSON"])[0][:120]
        raise NotJSON(f"{what} {where} is not valid JSON ({reason}); remove or replace it", reason) from None


def read_json_file(path: str | Path, what: str, limit: int = MAX_BYTES) -> Any:
    """parse_json of the regular file `path` (read_regular's checks first)."""
    return parse_json(read_regular(path, what, limit), what, path)


def read_jsonl_lines(path: str | Path, what: str, limit: int = MAX_JSONL_BYTES) -> list[tuple[int, Any]]:
    """(line number, value) of every line of the regular file `path` that parses, under read_regular's checks.

    A line that is not JSON (a torn append: a crash, a full disk or a network filesystem cut it short; bytes
    that are not UTF-8) is skipped, as are blank lines. A line that parses but passes a bound (an integer
    beyond 64 bits, nesting too deep) comes as its InputError, for the caller to name."""
    out: list[tuple[int, Any]] = []
    text = read_regular(path, what, limit).decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((number, parse_json(line, "line", number)))
        except NotJSON:
            continue
        except InputError as err:
            out.append((number, InputError(err.reason)))
    return out


def read_jsonl(path: str | Path, what: str = "log", limit: int = MAX_JSONL_BYTES) -> list[dict]:
    """The JSON objects of a JSON-lines log (metrics, a manifest), in order; [] when there is no such file.

    Lines that do not parse or pass a bound, and values that are not objects, are skipped (read_jsonl_lines);
    a file larger than `limit` is one InputError line. Anything but a regular file there reads as no log (a
    writer's next atomic write replaces it)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [value for _, value in read_jsonl_lines(path, what, limit) if isinstance(value, dict)]
