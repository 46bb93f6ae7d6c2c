"""Where a command's settings come from, and how its command line is run.

Order: flags, then ``VMTOOLS_<COMMAND>_<OPTION>`` environment variables (``VMTOOLS_PLAN_TIME_LIMIT
=30`` for ``vm-plan --time-limit 30``), then the ``[<command>]`` table (after ``[common]``) of
``/etc/vmtools/vmtools.toml`` and ``$XDG_CONFIG_HOME/vmtools/vmtools.toml`` (``VMTOOLS_CONFIG``
names one file instead), then defaults.

One namespace per command: ``--timeout`` of vm-snapshot (a read timeout) and of vm-apply (one
migration call) can never share a value by accident. ``[common]`` takes only the options that
mean the same in every command that has them (:data:`COMMON_KEYS`). ``--help``, ``--version``,
``--format`` and ``--output`` are never settings: a pipe always carries JSON to stdout. A key
that is not a setting is an error naming the file, the table, the key and the closest valid key.

Usage errors (an unknown option, a value that does not parse) are one line too,
``vm-plan: error: no such option: --bogus (see vm-plan --help)``, exit 2, like every other
error.
"""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

import typer

from vmtools import numbers
from vmtools.errors import DataError
from vmtools.inputs import MAX_FILE_BYTES, decode, read_limited
from vmtools.text import one_line

# Options that mean the same thing in every command that has them.
COMMON_KEYS = frozenset({"parallel", "verbose", "quiet", "debug", "textfile-dir"})
# Never settings: what to print and where is the command line's business alone.
NOT_SETTINGS = frozenset({"help", "version", "format", "output"})
COMMANDS = ("vm-snapshot", "vm-plan", "vm-apply", "vm-gmetric", "vm-lab", "vm-replay", "vm-web",
            "vm-status")


class SettingsError(Exception):
    """A settings file or variable that cannot be used: exit 2, one line."""


def env_prefix(prog: str) -> str:
    """``vm-plan`` -> ``VMTOOLS_PLAN_``."""
    name = prog[3:] if prog.startswith("vm-") else prog
    return "VMTOOLS_" + name.upper().replace("-", "_") + "_"


def config_paths() -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return [Path("/etc/vmtools/vmtools.toml"), Path(xdg) / "vmtools" / "vmtools.toml"]


def _long_name(param: Any) -> str | None:
    for opt in getattr(param, "opts", []):
        if opt.startswith("--"):
            return opt[2:]
    return None


def settable(command: Any) -> dict[str, Any]:
    """The command's settings: long option name -> click parameter (options only)."""
    out = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        name = _long_name(param)
        if name and name not in NOT_SETTINGS:
            out[name] = param
    return out


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {match[0]}?" if match else ""


def _why_not(key: str, table: str, valid: list[str]) -> str:
    if key in NOT_SETTINGS:
        return (f"--{key} is not a setting (give it on the command line, so that pipes "
                "always carry JSON)")
    if table == "common":
        return (f"not a common setting: [common] holds only {', '.join(sorted(COMMON_KEYS))}; "
                "put it in the table of the command it is for")
    return f"not a setting of {table}{_closest(key, valid)}"


def load_config(prog: str, valid: list[str],
                origins: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings of ``prog`` from the config files (``[common]`` then ``[prog]``; a later
    file overrides an earlier one), keyed by long option name. Unknown keys and tables are
    errors. ``origins``, when given, gets where each value was found (``FILE [table] key``)."""
    explicit = os.environ.get("VMTOOLS_CONFIG")
    paths = [Path(explicit)] if explicit else config_paths()
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            if "\0" in str(path):
                raise SettingsError(f"{str(path)!r}: a settings path holds a NUL character "
                                    "(VMTOOLS_CONFIG)")
            with open(path, "rb") as fh:
                data = tomllib.loads(decode(read_limited(fh, str(path), "settings file",
                                                         MAX_FILE_BYTES), str(path),
                                            "settings file"))
        except DataError as exc:
            raise SettingsError(str(exc)) from None
        except FileNotFoundError:
            if explicit:
                raise SettingsError(f"{path}: no such settings file (VMTOOLS_CONFIG)") from None
            continue
        except IsADirectoryError:
            raise SettingsError(f"{path}: a directory, not a settings file") from None
        except OSError as exc:
            raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not TOML: {exc}") from None
        for table, section in data.items():
            if table != "common" and table not in COMMANDS:
                raise SettingsError(
                    f"{path}: [{table}]: no such table; tables are [common] and one per "
                    f"command{_closest(table, ['common', *COMMANDS])}")
            if not isinstance(section, dict):
                raise SettingsError(f"{path}: {table}: expected a table [{table}]")
        for table in ("common", prog):
            for key, value in (data.get(table) or {}).items():
                name = key.replace("_", "-")
                if (table == "common" and name not in COMMON_KEYS) or \
                        (table != "common" and (name not in valid or name in NOT_SETTINGS)):
                    raise SettingsError(f"{path}: [{table}] {key}: "
                                        f"{_why_not(name, table, valid)}")
                if name in valid:          # a common key this command does not have: skip
                    merged[name] = value
                    if origins is not None:
                        origins[name] = f"{path} [{table}] {key}"
    return merged


def load_environment(prog: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``VMTOOLS_<COMMAND>_<OPTION>`` variables; returns the values and warnings for
    variables of this command's namespace that name no setting."""
    prefix = env_prefix(prog)
    values: dict[str, Any] = {}
    warnings = []
    by_env = {prefix + name.upper().replace("-", "_"): name for name in params}
    for var, text in os.environ.items():
        if not var.startswith(prefix):
            continue
        name = by_env.get(var)
        if name is None:
            option = var[len(prefix):].lower().replace("_", "-")
            why = (_why_not(option, prog, list(params)) if option in NOT_SETTINGS else
                   f"not a setting of {prog}{_closest(option, list(params))}")
            warnings.append(f"warning: {var} ignored: {why}")
            continue
        param = params[name]
        values[name] = text.split() if getattr(param, "multiple", False) else text
    return values, warnings


def _number_kind(param: Any) -> type | None:
    desc = getattr(param, "type_descriptor", None)
    kind = getattr(desc, "annotation", None)
    return kind if kind in (int, float) else None


def _refuse_nul(param: Any) -> None:
    """A text or path option (a flag, a variable or vmtools.toml) holding a NUL character is a
    usage error: no path or name can hold one, and the OS refuses it with a ValueError."""
    inner = param.process_value

    def process_value(ctx: Any, value: Any, _inner=inner, _param=param) -> Any:
        value = _inner(ctx, value)
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if item is not None and not isinstance(item, (bool, int, float)) and \
                    "\0" in str(getattr(item, "value", item)):
                raise typer.BadParameter("holds a NUL character", ctx=ctx, param=_param)
        return value

    param.process_value = process_value


def check_numbers(command: Any) -> None:
    """Every number option, whether from a flag, a ``VMTOOLS_*`` variable or vmtools.toml,
    goes through :func:`vmtools.numbers.problem`: finite (no ``inf``/``nan``), within the
    option's declared range (a count like ``--verbose`` is never negative), and at most
    :data:`~vmtools.numbers.MAX_OPTION` (an int: a uint32) in size. A value outside is a usage
    error, exit 2, naming the option; the command's own checks come after."""
    for param in command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        kind = _number_kind(param)
        if kind is None:
            _refuse_nul(param)
            continue
        inner = param.process_value

        def process_value(ctx: Any, value: Any, _inner=inner, _param=param, _kind=kind) -> Any:
            value = _inner(ctx, value)
            limit = numbers.UINT32_MAX if _kind is int else numbers.MAX_OPTION
            low = getattr(_param, "min", None)
            high = getattr(_param, "max", None)
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                if item is None:
                    continue
                bad = numbers.problem(item, lo=-limit if low is None else low,
                                      hi=limit if high is None else min(high, limit),
                                      integer=_kind is int)
                if bad:
                    raise typer.BadParameter(bad, ctx=ctx, param=_param)
            return value

        param.process_value = process_value


def _tidy_help(command: Any, prog: str) -> None:
    """Plain metavars (N, NUMBER, a|b|c) instead of typer's ``<int range>``; arguments show
    their name only; the epilog says where settings come from."""
    for param in command.params:
        if getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = lambda ctx: None        # "FILE", not "FILE <str>"
            continue
        if param.metavar is not None or getattr(param, "is_flag", False) or \
                getattr(param, "count", False):
            continue
        desc = getattr(param, "type_descriptor", None)        # typer >= 0.26
        if desc is not None:
            choices = desc.choices if desc.is_choice else None
            kind = getattr(desc.annotation, "__name__", str(desc.annotation))
        else:                                                   # click types
            choices = getattr(getattr(param, "type", None), "choices", None)
            kind = type(getattr(param, "type", None)).__name__
        kind = kind.lower()
        if choices:
            param.metavar = "|".join(str(getattr(c, "value", c)) for c in choices)
        elif "int" in kind:
            param.metavar = "N"
        elif "float" in kind:
            param.metavar = "NUMBER"
        elif "path" in kind:
            param.metavar = "PATH"
        else:
            param.metavar = "TEXT"
    params = settable(command)
    example = next((n for n in params if n not in COMMON_KEYS), None)
    if example:
        var = env_prefix(prog) + example.upper().replace("-", "_")
        note = (f"Settings: flags, then {env_prefix(prog)}<OPTION> environment variables "
                f"({var}=...), then the [{prog}] table of /etc/vmtools/vmtools.toml; "
                "see vmtools(7).")
        command.epilog = f"{command.epilog or ''}\n\n{note}".strip()


def _is(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


# The flags of the running command whose value came from a variable or a settings file, not
# from its command line, and where: {"--time-limit": "VMTOOLS_PLAN_TIME_LIMIT"}.
ORIGINS: dict[str, str] = {}


def with_origin(text: str) -> str:
    """An error message naming a flag the command line did not give ends saying where its
    value was set: the admin who never typed --time-limit is sent to the variable or file."""
    import re
    for flag, origin in ORIGINS.items():
        if re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text):
            return f"{text} (set by {origin})"
    return text


def _record_origins(params: dict[str, Any], env: dict[str, Any], config: dict[str, str],
                    prog: str, argv: list[str]) -> None:
    ORIGINS.clear()
    for name, param in params.items():
        origin = (env_prefix(prog) + name.upper().replace("-", "_") if name in env
                  else config.get(name))
        flags = [o for o in (*param.opts, *getattr(param, "secondary_opts", ()))]
        given = any(a == f or a.startswith(f + "=") or (len(f) == 2 and a.startswith(f))
                    for a in argv for f in flags)
        if origin and not given:
            ORIGINS["--" + name] = origin


def usage_error_line(prog: str, exc: BaseException) -> str:
    text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    text = " ".join(text.split())
    if text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    return f"{prog}: error: {one_line(with_origin(text))} (see {prog} --help)"


def run(app: typer.Typer, prog: str, error_line: Callable[[str, str], str],
        argv: list[str] | None = None) -> int:
    """Load the settings, run the command, turn usage errors into one line; returns the exit
    status."""
    from vmtools.cli._coerce import fast_coercion
    command = typer.main.get_command(app)
    fast_coercion(command)
    _tidy_help(command, prog)
    check_numbers(command)
    params = settable(command)
    config_origins: dict[str, str] = {}
    try:
        defaults = load_config(prog, list(params), config_origins)
        env, warnings = load_environment(prog, params)
    except SettingsError as exc:
        print(error_line(prog, str(exc)), file=sys.stderr)
        return 2
    for line in warnings:
        print(f"{prog}: {line}", file=sys.stderr)
    defaults.update(env)
    _record_origins(params, env, config_origins, prog, sys.argv[1:] if argv is None else argv)
    default_map = {params[name].name: value for name, value in defaults.items()}
    try:
        rv = command.main(args=argv, prog_name=prog, default_map=default_map,
                          standalone_mode=False)
    except Exception as exc:                      # noqa: BLE001 - click's, whatever its module
        if _is(exc, "ClickException"):
            print(usage_error_line(prog, exc), file=sys.stderr)
            return 2 if _is(exc, "UsageError") else int(getattr(exc, "exit_code", 2))
        if _is(exc, "Abort"):
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        raise
    return rv if isinstance(rv, int) else 0
