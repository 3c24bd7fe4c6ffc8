"""The flags of ``secateurs prune`` generated from ``PruneConfig``'s fields, and the config built back from them.

Each field whose metadata names a ``cli`` flag becomes that flag, with the field's help text and a parser for
its type; the target is written with ``--ratio`` / ``--macs`` / ``--params`` / ``--latency``, per-module
ratios with ``--overrides FILE`` / ``--sensitivity DIR``. Config files (``--config``) use the same names, since
the flags' destinations are the field names. ``tests/cli/test_cli_config_flags.py`` checks that every field
has its flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from secateurs.config import PruneConfig
from secateurs.errors import InvalidArgumentError, InvalidTypeError

#: fields set by other flags than their own (see the module docstring)
NOT_GENERATED = {"target": ("--ratio", "--macs", "--params", "--latency"), "overrides": ("--overrides", "--sensitivity")}
TARGET_FLAGS = ("ratio", "macs", "params", "latency")
_INT = {"round_to", "min_keep", "seed", "drop_layers", "merge_layers"}
_SWITCH = {"rotate", "rotate_per_layer"}  # boolean fields: the flag alone turns them on
_FLOAT = {"max_ratio", "tolerance"}
_BOOL = {"valid_heads"}


def parse_ratio(text: Any) -> float | dict[str, float] | None:
    if text is None:
        return None
    if isinstance(text, (int, float, dict)) and not isinstance(text, bool):  # from --config
        return text
    text = str(text)
    try:
        if "=" not in text:
            return float(text)
        out = {}
        for item in text.split(","):
            kind, _, value = item.partition("=")
            out[kind.strip()] = float(value)
        return out
    except ValueError:
        raise InvalidArgumentError(f"--ratio must be a number like 0.3 or kind=value pairs like channels=0.3,heads=0.25, "
                                   f"got {text!r}") from None


def parse_bool(text: Any) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_check(text: Any) -> bool | str:
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    if value == "full":
        return "full"
    raise argparse.ArgumentTypeError(f"expected true, false or full, got {text!r}")


def add_prune_flags(p: argparse.ArgumentParser) -> None:
    """``--ratio/--macs/--params/--latency`` and one flag per PruneConfig field that names one."""
    p.add_argument("--ratio", default=None,
                   help="fraction of units removed per group (default 0.5): 0.3, or per unit kind: channels=0.3,heads=0.25")
    p.add_argument("--macs", type=float, default=None, help="instead of --ratio: fraction of MACs KEPT, e.g. 0.5")
    p.add_argument("--params", type=float, default=None, help="instead of --ratio: fraction of parameters KEPT")
    p.add_argument("--latency", type=float, default=None,
                   help="instead of --ratio: fraction of measured latency KEPT on this machine, e.g. 0.5 (±10%%)")
    for f in dataclasses.fields(PruneConfig):
        flag = f.metadata.get("cli")
        if not flag:
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": f.metadata["help"] + _default(f)}
        if f.metadata.get("repeat"):
            kwargs.update(action="append", metavar="PATTERN")
        elif f.name in _SWITCH:
            kwargs.update(action="store_const", const=True)
        elif f.name in _INT:
            kwargs["type"] = int
        elif f.name in _FLOAT:
            kwargs["type"] = float
        elif f.name == "check":
            kwargs.update(type=parse_check, metavar="{true,false,full}")
        elif f.name in _BOOL:
            kwargs.update(type=parse_bool, metavar="{true,false}")
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        p.add_argument(flag, **kwargs)


def _default(f: dataclasses.Field[Any]) -> str:
    default = f.default if f.default is not dataclasses.MISSING else None
    return "" if default in (None, (), "") else f" (default {str(default).lower() if isinstance(default, bool) else default})"


def config_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options the flags (and ``--config``/``--set``) set: only those given."""
    out: dict[str, Any] = {}
    for name in TARGET_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            out[name] = parse_ratio(value) if name == "ratio" else value
    for f in dataclasses.fields(PruneConfig):
        if f.metadata.get("cli") and getattr(args, f.name, None) is not None:
            value = getattr(args, f.name)
            if f.name == "ignore" and isinstance(value, str):
                value = [value]
            if f.name == "check" and isinstance(value, str) and value != "full":
                value = parse_check(value)
            if f.name in _BOOL and isinstance(value, str):  # from --config/--set
                value = parse_bool(value)
            out[f.name] = value
    return out


def build_config(options: dict[str, Any]) -> PruneConfig:
    """``PruneConfig.build(**options)``, its errors naming the flags (``--round-to``) rather than the fields."""
    try:
        return PruneConfig.build(**options)
    except (InvalidArgumentError, InvalidTypeError) as exc:
        message = str(exc)
        for f in dataclasses.fields(PruneConfig):
            flag = f.metadata.get("cli")
            if flag and "_" in f.name:
                message = re.sub(rf"(?<![-\w]){f.name}\b", flag, message)
        raise type(exc)(message) from None


def config_from_args(args: argparse.Namespace, **extra: Any) -> PruneConfig:
    """The PruneConfig the command line asks for (``extra``: options read elsewhere, e.g. overrides files)."""
    return build_config({**config_options(args), **extra})
