"""vm-plan's settings as command-line options, and the documents a run reads, for the two
commands that plan: vm-plan and vm-replay (``--plan "..."``).

The options are built from :data:`vmtools.planner.settings.SETTINGS` (name, default, help,
range): nothing here lists a setting again.
"""

from __future__ import annotations

import enum
import inspect
from typing import Annotated, Any, Callable, Optional

import typer

from vmtools.cli._common import read_text
from vmtools.errors import DataError
from vmtools.model import Snapshot, loads
from vmtools.planner.settings import SETTINGS, Setting


def _choices(setting: Setting) -> type[enum.Enum]:
    name = "".join(part.title() for part in setting.name.split("_"))
    return enum.Enum(name, {c: c for c in setting.choices or ()}, type=str)


def option_parameter(setting: Setting) -> inspect.Parameter:
    """The typer option of one setting, as a keyword parameter of the command function."""
    decls = [setting.flag] + ([setting.short] if setting.short else [])
    extra: dict[str, Any] = {}
    if setting.metavar:
        extra["metavar"] = setting.metavar
    if setting.hidden:
        extra["hidden"] = True
    if setting.kind is int and setting.lo is not None and not setting.range_text:
        extra["min"] = int(setting.lo)
    kind: Any = setting.kind
    default = setting.default
    if setting.choices:
        kind = _choices(setting)
        default = kind(default)
    if setting.optional:
        kind = Optional[kind]
    annotation = Annotated[kind, typer.Option(*decls, help=setting.help, **extra)]
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def with_settings(before: list[inspect.Parameter], after: list[inspect.Parameter]
                  ) -> Callable[[Callable], Callable]:
    """Give ``func(**kwargs)`` the signature ``before + every setting + after``, so that
    typer builds its options from the table."""
    params = before + [option_parameter(s) for s in SETTINGS] + after

    def decorate(func: Callable) -> Callable:
        func.__signature__ = inspect.Signature(params)      # type: ignore[attr-defined]
        return func
    return decorate


def read_documents(prog: str, settings: Any, snapshot: Snapshot | None):
    """The documents ``settings`` name, read and checked (constraints as JSON: they are
    checked against each snapshot by the planner); :class:`vmtools.planner.front.Documents`."""
    from vmtools.planner.front import Documents
    constraints, name = None, "constraints"
    if settings.constraints is not None:
        text, name = read_text(prog, settings.constraints, "constraints")
        constraints = loads(text, name)
    hosts = None
    if settings.hosts is not None:
        from vmtools.drivers.hostmap import read_hostmap
        hosts = read_hostmap(settings.hosts)
    model = None
    if settings.power_model is not None:
        from vmtools.power_model import parse_power_model
        text, model_name = read_text(prog, settings.power_model, "power model")
        try:
            model = parse_power_model(loads(text, model_name), model_name)
        except DataError as exc:
            raise DataError(exc.message, f"{model_name}: {exc.where}" if exc.where
                            else model_name) from None
    docs = Documents(snapshot=snapshot, constraints=constraints, constraints_name=name,
                     hosts=hosts, power_model=model)
    if getattr(settings, "add", None) is not None:
        text, docs.guests_name = read_text(prog, settings.add, "guests")
        docs.guests = loads(text, docs.guests_name)
    if getattr(settings, "resume", None) is not None:
        from vmtools.apply.lifecycle import LEDGER, read_suspended
        from vmtools.apply.options import default_state_dir
        docs.suspended_path = settings.suspended or f"{default_state_dir()}/{LEDGER}"
        docs.suspended = read_suspended(docs.suspended_path)
    return docs


__all__ = ["option_parameter", "with_settings", "read_documents"]
