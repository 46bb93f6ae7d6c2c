"""take_snapshot: read one or more sources and build the snapshot document.

Each source hands back a reading (:mod:`vmtools.sources`); their union is the snapshot: a
host seen by two sources is a ``duplicate-host`` problem (the first source wins). The kinds of
source are :data:`SOURCE_KINDS`; Ganglia (:mod:`vmtools.ganglia.reading`) reads all its
places as one grid.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Iterator, Mapping

from vmtools.drivers import registry
from vmtools.errors import UsageError
from vmtools.ganglia import reading as ganglia
from vmtools.prometheus import source as prometheus
from vmtools.xapi import reading as xapi
from vmtools.model import SNAPSHOT_FORMAT, Snapshot
from vmtools.sources import Source, SourceKind, merge_readings

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
    """Read every source (all within ``timeout`` seconds when given) and return their
    union as a snapshot (:func:`vmtools.sources.merge_readings`)."""
    deadline = time.monotonic() + timeout if timeout is not None else None
    return merge_readings((s.read(deadline) for s in list(sources)), registry.names())


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
