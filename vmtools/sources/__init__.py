"""Sources: how a snapshot is read, one kind of monitoring at a time.

A source reads one platform (Ganglia today) and hands back a :class:`Reading`: the hosts and
guests it saw, the problems it met, and optionally the migration domain its hosts form and
recent CPU samples per guest. :func:`check_reading` holds every reading to the same
plausibility rules (safe names, capacities a host can have, demands a guest can have),
turning what breaks them into problems; :func:`merge_readings` makes one snapshot of several
readings (a host two sources report is a ``duplicate-host`` problem, the first one wins).

The kinds of source are a table (:data:`vmtools.snapshot.SOURCE_KINDS`); a new platform is
one module that defines a :class:`SourceKind` (ARCHITECTURE.md, "A source").
"""

from vmtools.sources.base import Reading, Source, SourceKind
from vmtools.sources.check import (CPU_SLACK, GUEST_MAX_NET_MBPS, HOST_MAX_NET_MBPS,
                                   HOST_MIN_NET_MBPS, PROBLEM_KINDS, check_reading,
                                   merge_readings, show, sort_problems)

__all__ = ["Reading", "Source", "SourceKind", "check_reading", "merge_readings",
           "sort_problems", "show", "PROBLEM_KINDS", "CPU_SLACK", "HOST_MIN_NET_MBPS",
           "HOST_MAX_NET_MBPS", "GUEST_MAX_NET_MBPS"]
