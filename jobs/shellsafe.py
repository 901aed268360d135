"""Shell safety of strings: what may reach an #SBATCH line or the shell, and how it is quoted.

Profile strings end up in an sbatch script: in #SBATCH lines (placement), in `export` lines (env, scratch,
slurm_conf) and on srun's command line (python). A line break ends an #SBATCH line early (sbatch then stops
reading the rest: --signal and --time are silently dropped) and starts a shell command; so every string is
refused when it holds a control character (jobs.profiles.shell_problems also matches names against what
Slurm accepts), and every value that reaches the shell is quoted. The documented $VAR slots
(environment.env values, storage.scratch) keep `$NAME` / `${NAME}` references expanding; everything else
in them is literal.
"""

from __future__ import annotations

import re
import unicodedata

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAR_REF = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})")
_SHELL_PATH = re.compile(r"[\w./+@,:=~-]+")


def control_character(value: str) -> str | None:
    """'a newline', 'a tab', ... when `value` holds a control or line-separator character, else None."""
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte"}
            return names.get(ch, f"a control character (U+{ord(ch):04X})")
    return None


def check_shell_path(path: str) -> str:
    """`path` when it can travel through #SBATCH lines and srun's command line; else ValueError (why)."""
    why = control_character(path)
    if why:
        raise ValueError(f"contains {why}")
    bad = next((ch for ch in path if not _SHELL_PATH.fullmatch(ch)), None)
    if bad is not None:
        raise ValueError("contains a space" if bad == " " else f"contains {bad!r}")
    return path


def shell_value(value: str) -> str:
    """`value` as one double-quoted shell word in which only $NAME and ${NAME} expand (no command
    substitution, no other expansion, no word splitting)."""
    def literal(text: str) -> str:
        return re.sub(r'([$`"\\])', r"\\\1", text)

    out, start = [], 0
    for ref in _VAR_REF.finditer(value):
        out += [literal(value[start:ref.start()]), ref.group()]
        start = ref.end()
    out.append(literal(value[start:]))
    return '"' + "".join(out) + '"'
