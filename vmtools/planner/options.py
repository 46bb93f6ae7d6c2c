"""vm-plan's power settings as the planner takes them: whether a plan may switch hosts on
and off, and with what limits (vm-plan(1), POWER)."""

from __future__ import annotations

from vmtools.errors import UsageError
from vmtools.planner.power import PowerOptions
from vmtools.power_model import PowerModel


def check_power_settings(standby_after: float, reserve: float, boot_timeout: float) -> None:
    if standby_after < 0 or reserve < 0 or boot_timeout <= 0:
        raise UsageError("{standby_after} and {reserve} must be 0 or more, {boot_timeout} "
                         "more than 0", settings=("standby_after", "reserve", "boot_timeout"))


def power_options(power: bool, objective: str, methods: dict[str, str] | None,
                  standby_after: float, min_hosts: int, reserve: float,
                  model: PowerModel | None, boot_timeout: float) -> PowerOptions | None:
    """The :class:`PowerOptions` of a run, or None when it switches no host.

    Hosts are switched with ``power``, or under ``auto`` as soon as the host map (``methods``:
    host -> ipmi, wol or none) gives some host a power method. Otherwise a power ``model``
    still ranks hosts by their watts under consolidate and auto (no host is switched).
    """
    check_power_settings(standby_after, reserve, boot_timeout)
    enabled = power or (objective == "auto" and methods is not None
                        and any(m != "none" for m in methods.values()))
    if not enabled:
        if model is not None and objective in ("consolidate", "auto"):
            return PowerOptions(methods={}, standby_after=standby_after, min_hosts=min_hosts,
                                reserve=reserve, boot_timeout=boot_timeout, model=model)
        return None
    return PowerOptions(methods=methods, standby_after=standby_after, min_hosts=min_hosts,
                        reserve=reserve, boot_timeout=boot_timeout, model=model)
