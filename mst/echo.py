"""Values shown to a person: control characters and escape sequences printed escaped.

An argument, a path or a label can hold a newline (which would forge a second `error:` line), a carriage
return (which would overwrite the line shown), an ANSI escape sequence (which drives the terminal) or a
bidirectional override (which reorders what is shown). `shown` writes each as a visible escape, as Python's
repr does, and leaves every other character as it is.
"""

from __future__ import annotations

import re

_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object) -> str:
    """`text` as one printable line: control characters, escapes and direction marks as `\\xNN`/`\\uNNNN`."""
    return _HIDDEN.sub(_escape, str(text))


def brief(value: object, limit: int = 80) -> str:
    """repr(value) in at most about `limit` characters (its middle left out), for a value a file handed us."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else f"<an integer of " \
        f"{len(str(abs(value))) if abs(value) < 10**4000 else 'thousands of'} digits>"
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-(limit // 2):]}"
