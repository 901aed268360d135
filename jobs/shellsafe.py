"""Shell safety of cluster-profile strings: what may reach an #SBATCH line or the shell, and how it is quoted.

Profile strings end up in an sbatch script: in #SBATCH lines (placement), in `export` lines (env, scratch,
slurm_conf) and on srun's command line (python). A line break ends an #SBATCH line early (sbatch then stops
reading the rest: --signal and --time are silently dropped) and starts a shell command; so every string is
refused when it holds a control character, names are matched against what Slurm accepts, and every value
that reaches the shell is quoted. The documented $VAR slots (environment.env values, storage.scratch) keep
`$NAME` / `${NAME}` references expanding; everything else in them is literal.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.profiles import ClusterProfile

_NAME = r"[A-Za-z0-9_.-]+"
# field -> (pattern the whole value must match, the fix to print)
_SLURM_WORDS = {
    "placement.partition": (re.compile(rf"{_NAME}(,{_NAME})*"),
                            "use a plain Slurm partition name, or a comma-separated list (sinfo lists them)"),
    "placement.account": (re.compile(_NAME), "use a plain Slurm account name (sacctmgr show assoc lists them)"),
    "placement.qos": (re.compile(_NAME), "use a plain Slurm QOS name (sacctmgr show qos lists them)"),
    "placement.constraint": (re.compile(r"[A-Za-z0-9_.,&|:*()\[\]!=-]+"),
                             "write a Slurm constraint without spaces or quotes, e.g. volta32gb or intel&ib"),
}
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


def _strings(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, string) of every string a profile holds: fields, list items, mapping keys and values."""
    out: list[tuple[str, str]] = []
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            out += _strings(value, key + ".")
        elif isinstance(value, str):
            out.append((key, value))
        elif isinstance(value, tuple):
            out += [(f"{key}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            out += [(f"{key} key", k) for k in value] + [(f"{key}.{k}", v) for k, v in value.items()]
    return out


def shell_problems(p: ClusterProfile) -> Iterator[tuple[str, str]]:
    """(problem, fix) of every profile string that could end an #SBATCH line or reach the shell unquoted."""
    from jobs.rundir import SAFE_NAME

    for key, value in _strings(p):
        why = control_character(value)
        if why:
            fix = ("split it into separate setup items" if key.startswith("environment.setup")
                   else _SLURM_WORDS[key][1] if key in _SLURM_WORDS else "write it on one line")
            yield (f"{key} contains {why}", fix)
    if not SAFE_NAME.fullmatch(p.name):
        yield (f"name {p.name!r} is not a path-safe name", "use letters, digits, '.', '_' and '-' in the file name")
    for key, (pattern, fix) in _SLURM_WORDS.items():
        value = getattr(p.placement, key.split(".", 1)[1])
        if value is not None and not pattern.fullmatch(value):
            yield (f"{key} {value!r} holds characters Slurm does not accept there", fix)
    for name in p.environment.env:
        if not ENV_NAME.fullmatch(name):
            yield (f"environment.env key {name!r} is not a variable name",
                   "use letters, digits and _ (not starting with a digit), e.g. NCCL_SOCKET_IFNAME")
    if p.environment.python is not None and not p.environment.python.strip():
        yield ("environment.python is empty", "name the interpreter (e.g. python or /opt/env/bin/python) or drop it")


