"""``--config FILE`` (YAML, TOML or JSON) and ``--set key=value`` for any subcommand that opts in.

Keys are the subcommand's option names with ``_`` (``round_to`` for ``--round-to``), which are also the
keyword arguments of the Python API (``secateurs.prune(..., round_to=8)``). A file holds either the keys
of one command at the top level, or one table per command (``prune:``, ``export:``, ...) so that one file
serves several commands. Precedence: defaults < file < ``--set`` < flags typed on the command line
(even when the typed value equals the default).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from secateurs.cli.commands import SUBCOMMANDS
from secateurs.errors import InvalidArgumentError, missing_dependency

# output plumbing, and the two permissions a file must not grant (replace a directory, run code): typed flags only
_NOT_CONFIGURABLE = {"help", "config", "overrides", "json", "quiet", "debug", "run", "trust_code", "force"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_PARSERS: dict[str, argparse.ArgumentParser] = {}
_EXAMPLES: dict[str, str] = {}


def add_config_flags(p: argparse.ArgumentParser, section: str, example: str = "ratio=0.3") -> None:
    """Give subcommand ``section`` the ``--config FILE`` and ``--set KEY=VALUE`` flags; ``example`` is a
    ``KEY=VALUE`` valid for this subcommand, shown in its help and error messages."""
    p.add_argument("--config", metavar="FILE", help="YAML (.yaml/.yml), TOML (.toml) or JSON file of options; keys are "
                   f"option names with '_' (round_to), at the top level or under a '{section}' table")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one option, e.g. --set {section}.{example} (repeatable; wins over --config)")
    p.set_defaults(config_section=section)
    _PARSERS[section] = p
    _EXAMPLES[section] = example


def set_example(section: str) -> str:
    """The ``--set`` example shown in ``section``'s help (``prune.ratio=0.3``)."""
    return f"{section}.{_EXAMPLES.get(section, 'KEY=VALUE')}"


def options(section: str) -> dict[str, argparse.Action]:
    """The configurable options of a subcommand: dest -> argparse action."""
    parser = _PARSERS[section]
    return {a.dest: a for a in parser._actions
            if a.option_strings and a.dest not in _NOT_CONFIGURABLE and a.dest != argparse.SUPPRESS}


def read_file(path: Path) -> dict[str, Any]:
    """Parse a YAML, TOML or JSON file into a dict, by suffix."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"cannot read --config {path}: {exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise missing_dependency("pyyaml", "config", f"YAML config file {path}") from None
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = _toml().loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise InvalidArgumentError(f"--config {path}: unknown file type {suffix or '(none)'}; use .yaml, .yml, .toml or .json")
    except InvalidArgumentError:
        raise
    except Exception as exc:  # each parser has its own error class (yaml.YAMLError, TOMLDecodeError, JSONDecodeError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgumentError(f"--config {path} is not valid {suffix[1:].upper()}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"--config {path} must hold a mapping of option names to values, got {type(data).__name__}")
    return data


def _toml() -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise missing_dependency("tomli", "config", "TOML config files on Python 3.10") from None
    return tomllib


def _section_values(data: dict[str, Any], section: str, where: str, valid: dict[str, argparse.Action]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in SUBCOMMANDS and isinstance(value, dict) and key not in valid:
            if key == section:
                out.update({k: (v, f"{where} {section}.{k}") for k, v in value.items()})
            continue  # another command's table
        out[key] = (value, f"{where} {key}")
    return out


def _unknown(key: str, section: str, where: str, valid: dict[str, argparse.Action]) -> InvalidArgumentError:
    import difflib

    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return InvalidArgumentError(f"{where}: unknown option {key!r} for 'secateurs {section}'{hint}; valid keys: "
                                f"{', '.join(sorted(valid))}")


def _parse_set(items: list[str], section: str, valid: dict[str, argparse.Action]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise InvalidArgumentError(f"--set {item!r}: expected KEY=VALUE, e.g. --set {set_example(section)}")
        head, dot, rest = key.partition(".")
        if dot:
            if head != section:
                where = f"'secateurs {head}'" if head in SUBCOMMANDS else "no command"
                raise InvalidArgumentError(f"--set {item!r}: {head!r} names {where}; this is 'secateurs {section}' "
                                           f"(write --set {section}.{rest}=...)")
            key = rest
        out[key] = (value, f"--set {item}")
    return out


def _is_flag(action: argparse.Action) -> bool:
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


_STRUCTURED = {"ratio", "batch_sizes"}  # text options whose files may also hold numbers, mappings or lists


def _one(action: argparse.Action, value: Any, where: str, from_text: bool) -> Any:
    kind = action.type
    if kind is None and not from_text and not isinstance(value, str) and action.dest not in _STRUCTURED:
        raise InvalidArgumentError(f"{where}: expected text, got {value!r:.60}")
    if kind in (int, float):
        if isinstance(value, bool) or not (from_text or isinstance(value, (int, float))):
            raise InvalidArgumentError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        try:
            converted = kind(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}") from None
        if kind is int and not from_text and float(value) != converted:
            raise InvalidArgumentError(f"{where}: expected an integer, got {value!r}")
        value = converted
    if action.choices is not None and value not in action.choices:
        raise InvalidArgumentError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def coerce(action: argparse.Action, value: Any, where: str, from_text: bool) -> Any:
    """Convert ``value`` (text from ``--set``, or a parsed file value) to what the option holds."""
    if _is_flag(action):
        if isinstance(value, bool):
            return value
        if from_text and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise InvalidArgumentError(f"{where}: expected true or false, got {value!r}")
    if action.nargs == "?" and action.const is not None:  # --int8 [MODE]: true means the bare flag, false the default
        text = str(value).strip().lower()
        if value is True or (from_text and text in _TRUE):
            return action.const
        if value is False or (from_text and text in _FALSE):
            return action.default
    if isinstance(action, argparse._AppendAction):
        if from_text:
            text = str(value).strip()
            try:
                items = json.loads(text) if text.startswith("[") else [s for s in text.split(",") if s.strip()]
            except (ValueError, RecursionError):
                raise InvalidArgumentError(f"{where}: {text!r:.60} is not a JSON list like [\"a\", \"b\"]") from None
            if not isinstance(items, list):
                raise InvalidArgumentError(f"{where}: expected a list, got {items!r:.60}")
        else:
            items = value if isinstance(value, list) else [value]
        return [_one(action, v, where, from_text) for v in items]
    if not from_text and isinstance(value, (list, dict)) and action.type is not None:
        raise InvalidArgumentError(f"{where}: expected a single value, got {value!r}")
    return _one(action, value, where, from_text)


def typed_dests(section: str, argv: list[str]) -> set[str]:
    """Options of ``section`` written on the command line (``--round-to 8``, ``--round-to=8``, an unambiguous
    prefix such as ``--round 8``, or a short form such as ``-o``)."""
    valid = options(section)
    by_string = {s: a.dest for a in valid.values() for s in a.option_strings}
    out = set()
    for token in argv:
        if not token.startswith("-") or token == "--":
            continue
        name = token.split("=", 1)[0]
        if name in by_string:
            out.add(by_string[name])
        elif name.startswith("--"):
            matches = {dest for s, dest in by_string.items() if s.startswith(name)}
            if len(matches) == 1:
                out |= matches
    return out


def apply_config(args: argparse.Namespace, argv: list[str] | None = None) -> None:
    """Fill ``args`` from ``--config`` and ``--set`` for subcommands registered with :func:`add_config_flags`.

    ``argv`` (default ``sys.argv[1:]``) tells which options were typed; those keep their typed value.
    """
    import sys

    section = getattr(args, "config_section", None)
    if section is None or section not in _PARSERS or not (getattr(args, "config", None) or getattr(args, "overrides", None)):
        return
    valid = options(section)
    typed = typed_dests(section, list(sys.argv[1:] if argv is None else argv))
    values: dict[str, tuple[Any, str]] = {}
    if args.config:
        path = Path(args.config)
        values.update(_section_values(read_file(path), section, f"--config {path}:", valid))
    texts = _parse_set(list(args.overrides or []), section, valid)
    for key, (_, where) in [*values.items(), *texts.items()]:
        if key not in valid:
            raise _unknown(key, section, where, valid)
    merged = {k: coerce(valid[k], v, w, from_text=False) for k, (v, w) in values.items()}
    merged.update({k: coerce(valid[k], v, w, from_text=True) for k, (v, w) in texts.items()})
    for key, value in merged.items():
        if key not in typed:
            setattr(args, valid[key].dest, value)
