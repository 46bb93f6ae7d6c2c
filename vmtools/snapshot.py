"""take_snapshot: read one or more sources and build the snapshot document.

Each source hands back a reading (:mod:`vmtools.sources`); their union is the snapshot: a
host seen by two sources is a ``duplicate-host`` problem (the first source wins). The kinds of
source are :data:`SOURCE_KINDS`; Ganglia (:mod:`vmtools.ganglia.reading`) reads all its
places as one grid.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterable, Iterator, Mapping

from vmtools.drivers import registry
from vmtools.errors import Unavailable, UsageError
from vmtools.ganglia import reading as ganglia
from vmtools.prometheus import source as prometheus
from vmtools.xapi import reading as xapi
from vmtools.model import SNAPSHOT_FORMAT, Problem, Snapshot
from vmtools.sources import Reading, Source, SourceKind, merge_readings, sort_problems

# The kinds of source, by name: a new platform is one module defining a SourceKind, and one
# entry here (ARCHITECTURE.md, "A source").
SOURCE_KINDS: dict[str, SourceKind] = {kind.name: kind for kind in (ganglia.KIND,
                                                                    prometheus.KIND,
                                                                    xapi.KIND)}


def make_sources(kind: str, settings: Mapping[str, Any]) -> list[Source]:
    """The sources of ``kind`` that ``settings`` (the command's settings for that kind) ask
    for; UsageError for a kind not in :data:`SOURCE_KINDS`."""
    try:
        return SOURCE_KINDS[kind].make(settings)
    except KeyError:
        raise UsageError(f"unknown kind of source {kind!r} (expected one of "
                         f"{', '.join(SOURCE_KINDS)})") from None


def take_snapshot(sources: Iterable[Source], *, timeout: float | None = None) -> Snapshot:
    """Read every source at once (threads: the sources wait on the network, not the CPU), all
    within ``timeout`` seconds when given, and return their union as a snapshot
    (:func:`vmtools.sources.merge_readings`).

    A source that does not answer (:class:`Unavailable`, or still reading at the deadline)
    is an ``unavailable-source`` problem when another source answered: its hosts are not in
    the snapshot and nothing is planned for them, the others are. When no source answers,
    the first one's :class:`Unavailable` (exit 69). A malformed answer (DataError) still ends
    the run: bad input is never half read."""
    sources = list(sources)
    deadline = time.monotonic() + timeout if timeout is not None else None
    if len(sources) == 1:
        return merge_readings([sources[0].read(deadline)], registry.names())
    results: list = [None] * len(sources)

    def run(i: int, source: Source) -> None:
        try:
            results[i] = source.read(deadline)
        except BaseException as exc:            # handed to the main thread, raised there
            results[i] = exc

    # Daemon threads: one still waiting on a peer past the deadline must not hold the
    # command's exit (its own socket timeouts end it).
    threads = [threading.Thread(target=run, args=(i, s), daemon=True,
                                name=f"source-{i}") for i, s in enumerate(sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    readings: list[Reading] = []
    lost: list[Problem] = []
    first: Unavailable | None = None
    for source, t, got in zip(sources, threads, results):
        if t.is_alive():
            got = Unavailable(f"{source.name}: no answer within the {timeout:g} s deadline")
        if isinstance(got, Unavailable):
            first = first or got
            lost.append(Problem("unavailable-source", f"{got}; its hosts are not in this "
                                "snapshot (nothing is planned for them)",
                                domain=getattr(source, "domain", None)))
        elif isinstance(got, BaseException):
            raise got
        else:
            readings.append(got)
    if not readings:
        assert first is not None
        raise first
    snap = merge_readings(readings, registry.names())
    snap.problems = sort_problems(snap.problems + lost)
    return snap


def choose_sources(**settings: Any) -> list[Source]:
    """The Ganglia source of vm-snapshot's Ganglia options (see
    :func:`vmtools.ganglia.reading.make`)."""
    return make_sources("ganglia", settings)


__all__ = ["take_snapshot", "make_sources", "choose_sources", "SOURCE_KINDS",
           "snapshot_json", "snapshot_json_chunks"]


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
    if snapshot.stopped:
        lists["stopped"] = snapshot.stopped

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
    if snapshot.samples is not None:
        from vmtools.model import samples_to_dict
        yield f",\n  {enc('samples')}: " + enc(samples_to_dict(snapshot.samples)).replace(
            "\n", "\n  ")
    yield "\n}\n"


def snapshot_json(snapshot: Snapshot) -> str:
    """The canonical text of a snapshot (see :func:`snapshot_json_chunks`)."""
    return "".join(snapshot_json_chunks(snapshot))
