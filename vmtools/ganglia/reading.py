"""Ganglia as a source of snapshots (:mod:`vmtools.sources`): the kind ``ganglia``.

:func:`choose_sources` turns vm-snapshot's Ganglia settings into the places to read (each
gmetad, each cluster through gmetad's interactive port, each gmond, saved dumps, the shipped
example); :class:`GangliaSource` reads them all as ONE grid (a guest's own gmond entry in one
answer completes its figures listed in another; a host in two answers is a
``duplicate-host``) and hands back one :class:`~vmtools.sources.Reading`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from typing import Any, BinaryIO, Callable, Mapping

from vmtools.errors import DataError, OptionError, Unavailable
from vmtools.ganglia.interpret import DEFAULT_STALE_AFTER, SnapshotBuilder
from vmtools.ganglia.names import GMETAD_INTERACTIVE_PORT, GMETAD_XML_PORT, GMOND_PORT
from vmtools.ganglia.sources import (DEFAULT_TIMEOUT, ClusterSource, ExampleSource, FileSource,
                                     GmetadSource, GmondSource, parse_address)
from vmtools.ganglia.xml import Cluster, GangliaDump, RawHost, parse_ganglia
from vmtools.model import Problem
from vmtools.sources.base import Reading, SourceKind

log = logging.getLogger("vmtools.snapshot")

Part = GmetadSource | ClusterSource | GmondSource | FileSource | ExampleSource


def choose_sources(*, gmetad: list[str], cluster: list[str], gmond: list[str],
                   inputs: list[str], example: str | None, timeout: float) -> list[Part]:
    """The places vm-snapshot reads, from its options: each ``gmetad`` address (its XML
    port; with ``cluster`` names, its interactive port asked for each cluster), each
    ``gmond``, each saved dump in ``inputs`` (``-`` is stdin), the shipped ``example``.
    With no source at all (or only clusters), gmetad on localhost."""
    parts: list[Part] = []
    gmetads = list(gmetad)
    if not gmetads and (cluster or not (gmond or inputs or example)):
        gmetads = ["localhost"]
    for text in gmetads:
        if cluster:
            host, port = parse_address(text, GMETAD_INTERACTIVE_PORT, "gmetad")
            parts += [ClusterSource(host, name, port, timeout) for name in cluster]
        else:
            host, port = parse_address(text, GMETAD_XML_PORT, "gmetad")
            parts.append(GmetadSource(host, port, timeout))
    for text in gmond:
        host, port = parse_address(text, GMOND_PORT, "gmond")
        parts.append(GmondSource(host, port, timeout))
    for path in inputs:
        parts.append(FileSource(path))
    if example is not None:
        parts.append(ExampleSource(example))
    if sum(1 for s in parts if isinstance(s, FileSource) and s.path == "-") > 1:
        raise OptionError("input", "-: standard input can be read only once")
    return parts


def read_source(source: Part, *, recover: bool = False,
                on_host: Callable[[Cluster, RawHost], None] | None = None,
                stream: BinaryIO | None = None) -> GangliaDump:
    """Fetch and parse one place (streaming its hosts to ``on_host`` when given); ``stream``:
    its answer, already fetched."""
    if stream is None:
        stream = source.open()
    if isinstance(source, ClusterSource) and on_host is not None:
        asked = on_host

        def on_host(cluster: Cluster, host: RawHost) -> None:  # noqa: F811 - a filter
            if cluster.name == source.cluster:
                asked(cluster, host)
    with contextlib.closing(stream) if stream is not None and not _is_stdin(stream) \
            else contextlib.nullcontext(stream):
        dump = parse_ganglia(stream, source.name, recover=recover, on_host=on_host)
    if isinstance(source, ClusterSource):
        # gmetad answers an unknown path with its parent (the whole grid): keep the cluster asked.
        wanted = [c for c in dump.clusters if c.name == source.cluster]
        if not wanted:
            names = ", ".join(sorted(repr(c.name) for c in dump.clusters)) or "none"
            raise DataError(f"gmetad has no cluster named {source.cluster!r} (it has {names}); "
                            "check {cluster}", source.name, settings=("cluster",))
        dump.clusters = wanted
    log.info("%s: %d cluster(s)", source.name, len(dump.clusters))
    return dump


def _is_stdin(stream) -> bool:
    return stream is getattr(sys.stdin, "buffer", None)


class GangliaSource:
    """Every Ganglia place one command reads, as one source (one grid)."""

    def __init__(self, parts: list[Part], *, recover: bool = False,
                 stale_after: float = DEFAULT_STALE_AFTER):
        self.parts = list(parts)
        self.recover = recover
        self.stale_after = stale_after
        self.name = ", ".join(p.name for p in self.parts)

    def read(self, deadline: float | None = None) -> Reading:
        """Every place read as one grid. The network places are fetched at once (threads,
        within ``deadline``), then parsed in the order given, so the first place's host wins
        a duplicate whatever answered first. A place that does not answer is an
        ``unavailable-source`` problem when another one answered (its clusters are not in
        the reading); when none answers, the first one's Unavailable."""
        fetched = _fetch_all(self.parts, deadline)
        builder = SnapshotBuilder(self.stale_after)
        lost: list[Problem] = []
        first: Unavailable | None = None
        answered = 0
        for i, part in enumerate(self.parts):
            got = fetched.get(i)
            # a file is read whatever the time (the deadline is for waiting on peers)
            late = got is None and deadline is not None and time.monotonic() > deadline
            if late and _networked(part):
                got = Unavailable(f"{part.name}: not read, the time for reading the sources "
                                  "ran out")
            elif got is None and _networked(part):
                try:
                    got = part.open()
                except Unavailable as exc:
                    got = exc
            if isinstance(got, Unavailable):
                first = first or got
                lost.append(Problem("unavailable-source", f"{got}; its hosts are not in this "
                                    "snapshot (nothing is planned for them)",
                                    domain=getattr(part, "cluster", None)))
                continue
            # Hosts go straight from the parser to the builder: memory stays flat.
            dump = read_source(part, recover=self.recover, stream=got,
                               on_host=lambda c, h, name=part.name: builder.add_host(c, h, name))
            builder.add_dump(dump)
            answered += 1
        if not answered and first is not None:
            raise first
        snap = builder.finish(self.name)
        return Reading(source=self.name, hosts=snap.hosts, vms=snap.vms,
                       problems=snap.problems + lost)


def _networked(part: Part) -> bool:
    return isinstance(part, (GmetadSource, ClusterSource, GmondSource))


def _fetch_all(parts: list[Part], deadline: float | None) -> dict[int, Any]:
    """By index in ``parts``: each network place's answer (a stream) or its Unavailable,
    fetched at once; a place still fetching at ``deadline`` is Unavailable. With fewer than
    two network places, nothing (the one is fetched when it is parsed, as before)."""
    wanted = [i for i, p in enumerate(parts) if _networked(p)]
    if len(wanted) < 2:
        return {}
    got: dict[int, Any] = {}

    def run(i: int) -> None:
        try:
            got[i] = parts[i].open()
        except BaseException as exc:     # Unavailable, or DataError (raised below)
            got[i] = exc

    threads = {i: threading.Thread(target=run, args=(i,), daemon=True) for i in wanted}
    for t in threads.values():
        t.start()
    for t in threads.values():
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    for i, t in threads.items():
        if t.is_alive():
            got[i] = Unavailable(f"{parts[i].name}: no answer before the deadline")
        elif not isinstance(got[i], Unavailable) and isinstance(got[i], BaseException):
            raise got[i]
    return got


def make(settings: Mapping[str, Any]) -> list[GangliaSource]:
    """The Ganglia source vm-snapshot's settings ask for: ``gmetad``, ``cluster``, ``gmond``,
    ``inputs`` (lists), ``example``, ``timeout``, ``recover``, ``stale_after``."""
    parts = choose_sources(gmetad=list(settings.get("gmetad") or []),
                           cluster=list(settings.get("cluster") or []),
                           gmond=list(settings.get("gmond") or []),
                           inputs=list(settings.get("inputs") or []),
                           example=settings.get("example"),
                           timeout=settings.get("timeout", DEFAULT_TIMEOUT))
    return [GangliaSource(parts, recover=bool(settings.get("recover", False)),
                          stale_after=settings.get("stale_after", DEFAULT_STALE_AFTER))]


KIND = SourceKind("ganglia", "gmetad, gmond or a saved Ganglia XML dump", make)

__all__ = ["GangliaSource", "choose_sources", "read_source", "make", "KIND"]
