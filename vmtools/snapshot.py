"""take_snapshot: read Ganglia from one or more sources and build the snapshot document.

The union of the sources is interpreted as one grid: a host seen in two sources is a
``duplicate-host`` problem (the first source wins). See :mod:`vmtools.ganglia.interpret`
for the rules and :mod:`vmtools.ganglia.xml` for the parser.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterable, Protocol

from vmtools.errors import DataError
from vmtools.ganglia.interpret import DEFAULT_STALE_AFTER, interpret
from vmtools.ganglia.sources import ClusterSource
from vmtools.ganglia.xml import GangliaDump, parse_ganglia
from vmtools.model import Snapshot

log = logging.getLogger("vmtools.snapshot")


class Source(Protocol):
    name: str

    def open(self): ...


def read_source(source: Source, *, recover: bool = False) -> GangliaDump:
    """Fetch and parse one source."""
    stream = source.open()
    with contextlib.closing(stream) if stream is not None and not _is_stdin(stream) \
            else contextlib.nullcontext(stream):
        dump = parse_ganglia(stream, source.name, recover=recover)
    if isinstance(source, ClusterSource):
        # gmetad answers an unknown path with its parent (the whole grid): keep the cluster asked.
        wanted = [c for c in dump.clusters if c.name == source.cluster]
        if not wanted:
            names = ", ".join(sorted(repr(c.name) for c in dump.clusters)) or "none"
            raise DataError(f"gmetad has no cluster named {source.cluster!r} (it has {names}); "
                            "check --cluster", source.name)
        dump.clusters = wanted
    hosts = sum(len(c.hosts) for c in dump.clusters)
    log.info("%s: %d cluster(s), %d host(s)", source.name, len(dump.clusters), hosts)
    return dump


def _is_stdin(stream) -> bool:
    import sys
    return stream is getattr(sys.stdin, "buffer", None)


def take_snapshot(sources: Iterable[Source], *, recover: bool = False,
                  stale_after: float = DEFAULT_STALE_AFTER) -> Snapshot:
    """Read every source and return their union as a snapshot."""
    sources = list(sources)
    dumps = [read_source(s, recover=recover) for s in sources]
    return interpret(dumps, stale_after=stale_after,
                     source=", ".join(s.name for s in sources))


__all__ = ["take_snapshot", "read_source"]
