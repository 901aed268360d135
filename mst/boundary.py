"""The one boundary of every console script: what a user's files or values cause ends in one line.

Each front end words the errors it knows (`error: <what is wrong>; <how to fix it>`). What still escapes it
is sorted here: an error of this toolkit's readers and checks (a ValueError subclass defined in `mst`, `jobs`
or `analysis`: its message is the line), a file-system error (the file named), input too deep or too large
for memory, and anything else, which is a bug in the toolkit: one line saying so. `MST_DEBUG=1` re-raises
everything, so the whole traceback is printed. Every line is printed through `mst.echo.shown`, so no value
in it can forge a second line or drive the terminal. Standard library only: `--help` stays instant.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from .echo import shown

DEBUG_ENV = "MST_DEBUG"
F = TypeVar("F", bound=Callable)
_OWN_PACKAGES = ("mst", "jobs", "analysis")


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def print_error(message: str, code: int) -> NoReturn:
    """`error: <message>` on stderr, escaped to one line, then exit with `code`."""
    print(f"error: {shown(message)}", file=sys.stderr)
    sys.exit(code)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def line_of(err: BaseException) -> tuple[str, int]:
    """(the one line, the exit code) for an exception no front end worded."""
    own = type(err).__module__.split(".")[0] in _OWN_PACKAGES
    if own and isinstance(err, ValueError):
        return _first_line(err), 2
    if isinstance(err, OSError) and err.filename is not None:
        return (f"cannot use {err.filename}: {err.strerror or _first_line(err)}; check that path (it must exist, "
                "be a regular file or folder as asked, and be readable or writable), then rerun"), 1
    if isinstance(err, RecursionError):
        return ("an input nests too deeply to be read; look for a file or value nested thousands of levels "
                f"deep (rerun with {DEBUG_ENV}=1 to see where)"), 2
    if isinstance(err, MemoryError):
        return ("an input is too large to hold in memory; look for a huge file or value (rerun with "
                f"{DEBUG_ENV}=1 to see where)"), 2
    return (f"internal error ({type(err).__name__}: {_first_line(err)}); this is a bug in the toolkit: rerun "
            f"with {DEBUG_ENV}=1 for the traceback and report it"), 1


def console_script(main: F) -> F:
    """Wrap a console script's `main`: SystemExit passes, everything else becomes one line (line_of)."""

    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # output piped into head & co.
            sys.stderr.close()
            sys.exit(1)
        except BaseException as err:  # the boundary: every other exception ends here
            if debugging():
                raise
            message, code = line_of(err)
            print_error(message, code)

    return guarded  # type: ignore[return-value]
