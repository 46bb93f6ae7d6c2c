"""Metric families as plain data, and the two ways vmtools gives them to Prometheus: served
over HTTP (vm-gmetric's exporter) or written as a node_exporter textfile-collector file.

A :class:`Family` is a name, a help text, a type (``gauge`` or ``counter``), label names and
samples; the commands build them without knowing prometheus_client, which renders the text
exposition format (escaping, ``# HELP`` and ``# TYPE`` lines) and serves it.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import start_http_server

from vmtools.atomic import write_atomic
from vmtools.errors import LocalFailure, OptionError, Unavailable

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass
class Family:
    name: str
    help: str
    type: str = "gauge"                 # gauge or counter (a counter's name ends in _total)
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def add(self, value: float, *labels: str) -> "Family":
        if len(labels) != len(self.labels):
            raise ValueError(f"{self.name}: {len(labels)} label values for {self.labels}")
        self.samples.append((tuple(str(v) for v in labels), float(value)))
        return self


def _rendered(family: Family):
    if not _NAME.fullmatch(family.name) or not all(_LABEL.fullmatch(x) for x in family.labels):
        raise ValueError(f"not a Prometheus metric or label name: {family.name} {family.labels}")
    if family.type == "counter":
        out = CounterMetricFamily(family.name, family.help, labels=list(family.labels))
    else:
        out = GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
    for labels, value in family.samples:
        if math.isfinite(value):        # an unknown figure is left out, never NaN
            out.add_metric(list(labels), value)
    return out


class _Collector:
    def __init__(self, collect: Callable[[], Iterable[Family]]):
        self._collect = collect

    def collect(self):
        for family in self._collect():
            yield _rendered(family)


def registry_of(collect: Callable[[], Iterable[Family]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(collect))
    return registry


def render(families: Iterable[Family]) -> str:
    """The text exposition format of ``families`` (version 0.0.4)."""
    fams = list(families)
    return generate_latest(registry_of(lambda: fams)).decode("utf-8")


def parse_listen(text: str, default_port: int) -> tuple[str, int]:
    """``ADDR:PORT``, ``[ADDR6]:PORT``, ``:PORT`` (every address) or ``ADDR`` (default port)."""
    import ipaddress
    host, port = text, str(default_port)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise OptionError("prometheus-listen", f"{text!r}: expected [ADDR]:PORT")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionError("prometheus-listen", f"{text!r}: {port!r} is not a TCP port")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise OptionError("prometheus-listen", f"{text!r}: {host!r} is not an IP address "
                              "(listen on an address, not a name)") from None
    return host or "0.0.0.0", int(port)


class Exporter:
    """An HTTP server on ``address:port`` that answers every path with ``collect()``'s families
    in the text exposition format (prometheus_client's server, in a thread)."""

    def __init__(self, address: str, port: int, collect: Callable[[], Iterable[Family]]):
        self.lock = threading.Lock()

        def guarded() -> list[Family]:
            with self.lock:
                return list(collect())
        try:
            self.server, self.thread = start_http_server(port, address, registry_of(guarded))
        except OSError as exc:
            raise Unavailable(f"cannot listen on {address}:{port} for Prometheus: "
                              f"{exc.strerror or exc}") from None
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_textfile(path: str, families: Iterable[Family]) -> None:
    """Write ``families`` to ``path`` for node_exporter's textfile collector, atomically: a
    temporary file the collector ignores (it reads ``*.prom`` only), then a rename."""
    text = render(families)
    try:
        # the temporary file is named .NAME....tmp: the collector reads *.prom only;
        # node_exporter runs as its own user
        write_atomic(path, text, mode=0o644)
    except OSError as exc:
        raise LocalFailure(f"{path}: cannot write the textfile metrics: "
                           f"{exc.strerror or exc}") from None


def read_textfile(path: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The samples of a textfile written earlier (name -> [(labels, value)]); an absent or
    unreadable file is empty (the next write replaces it)."""
    from prometheus_client.parser import text_string_to_metric_families
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(1 << 20)
        out: dict[str, list] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.setdefault(s.name, []).append((dict(s.labels), s.value))
        return out
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
