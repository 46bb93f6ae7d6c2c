"""take_snapshot: read Ganglia from one or more sources and build the snapshot document.

The union of the sources is interpreted as one grid: a host seen in two sources is a
``duplicate-host`` problem (the first source wins). See :mod:`vmtools.ganglia.interpret`
for the rules and :mod:`vmtools.ganglia.xml` for the parser.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Callable, Iterable, Iterator, Protocol

from vmtools.errors import DataError, OptionError
from vmtools.ganglia.interpret import DEFAULT_STALE_AFTER, SnapshotBuilder
from vmtools.ganglia.names import GMETAD_INTERACTIVE_PORT, GMETAD_XML_PORT, GMOND_PORT
from vmtools.ganglia.sources import (ClusterSource, ExampleSource, FileSource, GmetadSource,
                                     GmondSource, parse_address)
from vmtools.ganglia.xml import Cluster, GangliaDump, RawHost, parse_ganglia
from vmtools.model import SNAPSHOT_FORMAT, Snapshot

log = logging.getLogger("vmtools.snapshot")


class Source(Protocol):
    name: str

    def open(self): ...


def choose_sources(*, gmetad: list[str], cluster: list[str], gmond: list[str],
                   inputs: list[str], example: str | None, timeout: float) -> list[Source]:
    """The sources vm-snapshot reads, from its options: each ``gmetad`` address (its XML
    port; with ``cluster`` names, its interactive port asked for each cluster), each
    ``gmond``, each saved dump in ``inputs`` (``-`` is stdin), the shipped ``example``.
    With no source at all (or only clusters), gmetad on localhost."""
    sources: list[Source] = []
    gmetads = list(gmetad)
    if not gmetads and (cluster or not (gmond or inputs or example)):
        gmetads = ["localhost"]
    for text in gmetads:
        if cluster:
            host, port = parse_address(text, GMETAD_INTERACTIVE_PORT, "gmetad")
            sources += [ClusterSource(host, name, port, timeout) for name in cluster]
        else:
            host, port = parse_address(text, GMETAD_XML_PORT, "gmetad")
            sources.append(GmetadSource(host, port, timeout))
    for text in gmond:
        host, port = parse_address(text, GMOND_PORT, "gmond")
        sources.append(GmondSource(host, port, timeout))
    for path in inputs:
        sources.append(FileSource(path))
    if example is not None:
        sources.append(ExampleSource(example))
    if sum(1 for s in sources if isinstance(s, FileSource) and s.path == "-") > 1:
        raise OptionError("input", "-: standard input can be read only once")
    return sources


def read_source(source: Source, *, recover: bool = False,
                on_host: Callable[[Cluster, RawHost], None] | None = None) -> GangliaDump:
    """Fetch and parse one source (streaming its hosts to ``on_host`` when given)."""
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
                            "check --cluster", source.name)
        dump.clusters = wanted
    log.info("%s: %d cluster(s)", source.name, len(dump.clusters))
    return dump


def _is_stdin(stream) -> bool:
    import sys
    return stream is getattr(sys.stdin, "buffer", None)


def take_snapshot(sources: Iterable[Source], *, recover: bool = False,
                  stale_after: float = DEFAULT_STALE_AFTER) -> Snapshot:
    """Read every source and return their union as a snapshot."""
    sources = list(sources)
    builder = SnapshotBuilder(stale_after)
    for source in sources:
        # Hosts go straight from the parser to the builder: memory stays flat.
        dump = read_source(source, recover=recover,
                           on_host=lambda c, h, name=source.name: builder.add_host(c, h, name))
        builder.add_dump(dump)
    return builder.finish(", ".join(s.name for s in sources))


def take_xapi_snapshot(url: str, *, credentials: str | None = None, ca_file: str | None = None,
                       fingerprints: list[str] = (), insecure: bool = False,
                       timeout: float = 10.0, window: float = 60.0) -> Snapshot:
    """Read a XCP-ng / XenServer pool through its master (:mod:`vmtools.xapi.source`)."""
    from vmtools.drivers.xapi import XapiPool, XapiSettings
    from vmtools.xapi.source import read_pool
    pool = XapiPool(XapiSettings(url, credentials=credentials, ca_file=ca_file,
                                 fingerprints=tuple(fingerprints), insecure=insecure,
                                 timeout=timeout))
    try:
        return read_pool(pool, window=window)
    finally:
        pool.close()


__all__ = ["take_snapshot", "take_xapi_snapshot", "read_source"]


def snapshot_json_chunks(snapshot: Snapshot) -> Iterator[str]:
    """The canonical text of a snapshot, exactly as ``model.dumps(snapshot.to_dict())``, one
    host or guest at a time (a 40,000-guest snapshot as one dict tree and one pure-Python
    indenting encoder costs several times the memory of the text)."""
    head = {"format": SNAPSHOT_FORMAT, "version": snapshot.version,
            "generator": snapshot.generator, "created": snapshot.created,
            "source": snapshot.source}
    lists = {"hosts": sorted(snapshot.hosts, key=lambda h: h.name),
             "vms": sorted(snapshot.vms, key=lambda v: v.name),
             "problems": snapshot.problems}
    if snapshot.rules:
        lists["rules"] = snapshot.rules

    def enc(value) -> str:
        return json.dumps(value, indent=2, ensure_ascii=True, allow_nan=False)

    yield "{\n" + ",\n".join(f"  {enc(k)}: {enc(v)}" for k, v in head.items())
    for key, items in lists.items():
        if not items:
            yield f",\n  {enc(key)}: []"
            continue
        sep = f",\n  {enc(key)}: [\n    "
        for item in items:
            yield sep + enc(item if isinstance(item, dict) else item.to_dict()
                            ).replace("\n", "\n    ")
            sep = ",\n    "
        yield "\n  ]"
    yield "\n}\n"


def snapshot_json(snapshot: Snapshot) -> str:
    """The canonical text of a snapshot (see :func:`snapshot_json_chunks`)."""
    return "".join(snapshot_json_chunks(snapshot))
