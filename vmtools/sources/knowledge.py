"""What vmtools knows about each host and guest of a snapshot: *known*, *stale* or *unknown*,
and why, from the snapshot's problems (one vocabulary: the problem kinds of
vmtools-formats(5)).

A host a problem names is **frozen**: the planners move nothing onto it, its guests stay
(except to end an overload its known guests alone already cause), and a guest the problem
names is unknown (its figures are missing, old or contradictory). A problem that names no
host (a dropped cluster, a truncated answer) freezes nothing: what vm-snapshot did not see is
not in the snapshot, and nothing is planned for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmtools.model import Problem, Snapshot

# Every problem kind, what it makes of the host or guest it names ("stale": figures that were
# true once; "unknown": figures missing, refused or contradictory), and what it says. The
# order is the snapshot's sort order. vmtools-formats(5) documents each one.
KINDS: dict[str, tuple[str, str]] = {
    "duplicate-guest": ("unknown", "a guest listed by two hosts"),
    "no-data": ("unknown", "a listed guest with no CPU or memory figure"),
    "stale-guest": ("stale", "a guest's metrics older than their TMAX or DMAX"),
    "incomplete-host": ("unknown", "the host could not read its whole guest list"),
    "partial-container": ("unknown", "a host with some but not all container.* metrics"),
    "not-a-number": ("unknown", "a figure that is not a finite number"),
    "bad-value": ("unknown", "a figure outside its type or a plausible range"),
    "stale-host": ("stale", "a host whose own figures are older than its monitoring promises"),
    "stale-cluster": ("stale", "gmetad serves old data of the host's cluster"),
    "offline-host": ("stale", "a host silent for more than 4 x TMAX that still lists guests"),
    "vanished-host": ("unknown", "a host seen by the last run and gone now"),
    "vanished-guest": ("unknown", "a guest seen by the last run and gone now"),
    "duplicate-host": ("unknown", "a host seen twice"),
    "duplicate-series": ("unknown", "two series for one host or guest in a Prometheus answer"),
    "unsafe-name": ("unknown", "a name vmtools will not pass on"),
    "reserved-name": ("unknown", "a name Xen gives Domain-0 or a guest in flight"),
    "dropped-host": ("unknown", "a host left out of a malformed answer"),
    "dropped-cluster": ("unknown", "a cluster left out of a malformed answer"),
    "truncated": ("unknown", "an answer cut short"),
    "unavailable-source": ("unknown", "a source that did not answer: its hosts are not in the "
                           "snapshot and nothing is planned for them"),
}
PROBLEM_KINDS = tuple(KINDS)

# More than this fraction of the hosts, or of the guests, frozen: monitoring is broken rather
# than partial, and vm-plan plans nothing (exit 75, cron tries again).
DEFAULT_MAX_FROZEN = 0.25


def knowledge_of(kind: str) -> str:
    """'stale' or 'unknown' for a problem kind (an unknown kind, from a newer vm-snapshot,
    is unknown)."""
    return KINDS.get(kind, ("unknown", ""))[0]


@dataclass
class Frozen:
    """A host vmtools plans around, and the problems that froze it."""
    host: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(p.kind for p in self.problems))

    @property
    def knowledge(self) -> str:
        return "unknown" if any(knowledge_of(k) == "unknown" for k in self.kinds) else "stale"

    def why(self) -> str:
        """One line: the kinds and the first problem's message."""
        first = self.problems[0].message if self.problems else ""
        more = len(self.problems) - 1
        return (f"{', '.join(self.kinds)}: {first}" +
                (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""))


@dataclass
class Knowledge:
    frozen: dict[str, Frozen]               # host -> why it is frozen
    unknown_vms: dict[str, list[Problem]]   # guest -> the problems naming it

    def host(self, name: str) -> str:
        f = self.frozen.get(name)
        return "known" if f is None else f.knowledge

    def vm(self, name: str, host: str | None = None) -> str:
        """A guest a problem names is what that problem makes it; a guest on a host a problem
        of the host itself names (not one of its guests) is as known as that host; any other
        guest is known (a frozen host's other guests are, their figures are fresh)."""
        own = self.unknown_vms.get(name)
        if own:
            return "unknown" if any(knowledge_of(p.kind) == "unknown" for p in own) else "stale"
        f = self.frozen.get(host or "")
        if f is None:
            return "known"
        kinds = [p.kind for p in f.problems if p.vm is None]
        if not kinds:
            return "known"
        return "unknown" if any(knowledge_of(k) == "unknown" for k in kinds) else "stale"


def assess(snap: Snapshot) -> Knowledge:
    """Each frozen host of ``snap`` (named by a problem, or hosting a guest a problem names
    that names no host) and each guest a problem names (it stays where it is)."""
    frozen: dict[str, Frozen] = {}
    unknown: dict[str, list[Problem]] = {}
    where: dict[str, str] | None = None       # made when a problem names no host
    for p in snap.problems:
        if p.vm:
            unknown.setdefault(p.vm, []).append(p)
        # The host a problem names; else the host of the guest it names. A guest listed by
        # two hosts is kept (and counted) on one: the other is the one whose use is unknown.
        if not p.host and where is None:
            where = snap.guest_hosts()
        host = p.host or where.get(p.vm or "")
        if host:
            frozen.setdefault(host, Frozen(host)).problems.append(p)
    return Knowledge(frozen=frozen, unknown_vms=unknown)


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 host', '3 hosts'."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


__all__ = ["KINDS", "PROBLEM_KINDS", "DEFAULT_MAX_FROZEN", "Frozen", "Knowledge", "assess",
           "knowledge_of", "plural"]
