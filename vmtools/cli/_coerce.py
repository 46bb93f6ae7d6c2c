"""Option values without pydantic: the values a command line carries, taken as typer takes them.

typer 0.29 turns every option's value into its type through a pydantic ``TypeAdapter`` that it
builds for every option on every run, even an option left unset: importing pydantic and
building some 60 adapters is about 70 ms of CPU at each start of a command that runs in a
fraction of a second (a cron pipe starts three; the tests start hundreds).

:func:`fast_coercion` gives each option a coercion that takes what needs no parser as typer
itself would: unset (``None``), a value already of the option's type (a default, a typed
vmtools.toml value), a plain decimal for an ``int`` or ``float`` within the option's range, a
text, a choice spelled as it is declared, a path (through typer's own path checks), a list of
texts. Anything else, and every value typer would refuse, goes to typer's own coercion, built
only then: its results and its error messages are typer's. With a typer that works otherwise
(no ``_runtime_param``), nothing is changed.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any, get_args, get_origin

_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})\Z")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?\Z")
_UNSURE = object()


def fast_coercion(command: Any) -> None:
    """Give each option and argument of ``command`` (typer's click command) the coercion above;
    nothing when this typer builds its coercions otherwise."""
    try:
        from typer._coercion import build_runtime_param
        from typer._param_types import coerce_cli_choice, coerce_cli_path
    except ImportError:
        return
    def install(param: Any) -> Any:
        if getattr(param, "_runtime_param", _UNSURE) is None and \
                getattr(param, "type_descriptor", None) is not None:
            param._runtime_param = _Coercion(param.type_descriptor, build_runtime_param,
                                             coerce_cli_choice, coerce_cli_path)
        return param

    for param in getattr(command, "params", []):
        install(param)
    help_option = getattr(command, "get_help_option", None)
    if help_option is not None:           # -h/--help is made when a run first asks for it
        command.get_help_option = lambda ctx: install(help_option(ctx))


class _Coercion:
    """One option's coercion: the plain cases here, the rest by typer's own (built lazily)."""

    def __init__(self, descriptor: Any, build: Any, choice: Any, path: Any) -> None:
        self.descriptor = descriptor
        self.info = descriptor.parameter_info
        self._build, self._choice, self._path = build, choice, path
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if multi:
            out = self._texts(value)
        elif self.descriptor.file_annotation is not None or self.info.parser is not None:
            out = _UNSURE
        else:
            out = self._one(self.descriptor.annotation, value, param, ctx)
        if out is _UNSURE:
            if self._typer is None:
                self._typer = self._build(self.descriptor)
            return self._typer.coerce(value, param=param, ctx=ctx)
        return out

    def _texts(self, value: Any) -> Any:
        annotation = self.descriptor.annotation
        if get_origin(annotation) is list and get_args(annotation) == (str,) and \
                isinstance(value, (list, tuple)) and all(type(v) is str for v in value):
            return list(value)
        return _UNSURE

    def _one(self, annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
        if annotation is str:
            return value if type(value) is str else _UNSURE
        if annotation in (int, float):
            return self._number(annotation, value)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            if isinstance(value, annotation):
                return value
            if type(value) is not str:
                return _UNSURE
            try:
                return self._choice(value, choices=list(annotation),
                                    case_sensitive=self.info.case_sensitive, ctx=ctx)
            except ValueError:
                return _UNSURE              # typer's message for it
        if annotation is Path and self.info.path_type is None:
            if isinstance(value, Path):
                pass
            elif type(value) is str and value and "\0" not in value:
                value = Path(value)         # what pydantic's Path makes of a text
            else:
                return _UNSURE
            return self._path(value, self.info, path_type=Path, param=param, ctx=ctx)
        return _UNSURE

    def _number(self, kind: type, value: Any) -> Any:
        if type(value) is str and (_INT if kind is int else _FLOAT).match(value):
            value = kind(value)
        elif type(value) is not kind:
            return _UNSURE
        low, high = self.info.min, self.info.max
        if self.info.clamp and (low is not None or high is not None):
            return _UNSURE
        if (low is None or value >= low) and (high is None or value <= high):
            return value
        return _UNSURE                      # out of range (or nan): typer's message
