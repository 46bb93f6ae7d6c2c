"""What a source is and what it hands back.

- :class:`Reading` -- what one source saw: hosts and guests as the snapshot has them (model
  objects), the problems met on the way, the name the snapshot's ``source`` shows, and two
  optional extras: the *migration domain* the hosts form (guests move only between hosts of
  one domain, e.g. one XAPI pool; ``None``: no such limit is known) and, per guest, recent
  CPU samples ``(epoch seconds, physical CPUs)``, oldest first, for a source that keeps
  history (vm-plan's demand window); and the rules the platform declares (``rules``).
- :class:`Source` -- anything with a ``name`` and ``read(deadline) -> Reading``. ``deadline``
  is a :func:`time.monotonic` time the whole read must end by, or None (the source's own
  timeouts only). A source that cannot be read raises
  :class:`~vmtools.errors.Unavailable` (or DataError for a malformed file); bad *values*
  are problems in the reading, never exceptions.
- :class:`SourceKind` -- one platform in the table of kinds: its name, one line for
  ``--help``, and ``make(settings)``, the sources of that kind a command's settings ask for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from vmtools.model import VM, Host, Problem


@dataclass
class Reading:
    source: str
    hosts: list[Host] = field(default_factory=list)
    vms: list[VM] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    migration_domain: str | None = None
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    # Rules the platform itself declares (vmtools.constraints rule objects: a XAPI pool's
    # anti-affinity VM groups as spread, its disabled hosts as maintenance); the snapshot
    # carries them in its ``rules`` and vm-plan obeys them.
    rules: list[dict] = field(default_factory=list)
    # Guests the platform keeps but does not run (a XAPI pool's Suspended and Halted VMs),
    # as :func:`vmtools.model.stopped_entry` dicts: the snapshot's ``stopped``, never placed.
    stopped: list[dict] = field(default_factory=list)


@runtime_checkable
class Source(Protocol):
    name: str

    def read(self, deadline: float | None = None) -> Reading: ...


@dataclass(frozen=True)
class SourceKind:
    name: str
    summary: str
    make: Callable[[Mapping[str, Any]], list[Source]]


__all__ = ["Reading", "Source", "SourceKind"]
