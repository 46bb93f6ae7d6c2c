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

from vmtools.inputs import input_name
from vmtools.model import Snapshot, load_file
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
    """The documents ``settings`` name, read through the one loader (:func:`model.load_file`:
    bounded, a bad one exit 65 naming it); constraints and guests as JSON (the planner checks
    them against each snapshot); :class:`vmtools.planner.front.Documents`."""
    from vmtools.planner.front import Documents
    docs = Documents(snapshot=snapshot)
    if settings.constraints is not None:
        docs.constraints = load_file(settings.constraints, "constraints", prog=prog)
        docs.constraints_name = input_name(settings.constraints)
    if getattr(settings, "state", None) is not None:
        from vmtools.maintenance import read_maintenance
        docs.maintenance = read_maintenance(settings.state)
    if settings.hosts is not None:
        from vmtools.drivers.hostmap import read_hostmap
        docs.hosts = read_hostmap(settings.hosts)
    if settings.power_model is not None:
        from vmtools.power_model import parse_power_model
        name = input_name(settings.power_model)
        docs.power_model = load_file(settings.power_model, "power model",
                                     lambda obj: parse_power_model(obj, name), prog=prog)
    if getattr(settings, "add", None) is not None:
        docs.guests = load_file(settings.add, "guests", prog=prog)
        docs.guests_name = input_name(settings.add)
    if getattr(settings, "resume", None) is not None or getattr(settings, "context_switch",
                                                                 False):
        from vmtools.apply.lifecycle import LEDGER, read_suspended
        from vmtools.apply.options import default_state_dir
        docs.suspended_path = settings.suspended or f"{default_state_dir()}/{LEDGER}"
        docs.suspended = read_suspended(docs.suspended_path)
    return docs


__all__ = ["option_parameter", "with_settings", "read_documents"]
