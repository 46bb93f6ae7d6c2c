"""Parse the XML that gmond (port 8649) and gmetad (ports 8651/8652) serve. Pure: no sockets.

The parser streams (``lxml.etree.iterparse``, each HOST cleared once read), so a dump of
thousands of hosts never sits in memory whole. It keeps only what vm-snapshot interprets:
the ``container.*`` metrics and the few standard metrics of a guest's own gmond entry.

Schema returned (:class:`GangliaDump`)::

    GangliaDump(clusters=[Cluster(name, localtime, grid_localtime, hosts=[
                    RawHost(name, ip, reported, tn, tmax, line, metrics={NAME: VAL})])],
                dropped=[Dropped(kind "host"|"cluster"|"input", name, where, reason)])

``grid_localtime`` is the LOCALTIME of the outermost GRID (the time of gmetad's answer), or
None for gmond's own answer, which has no GRID.

Ganglia's XML comes off unauthenticated UDP and gmetad 3.7.2 re-emits values without escaping
them, so malformed input is normal. Strictly, any defect is a :class:`DataError` whose
``where`` is ``source:line:col``. With ``recover=True`` the document is cut at HOST and
CLUSTER boundaries and every piece is parsed on its own: what parses is kept, what does not
is listed in ``dropped`` (never guessed at, as libxml2's own recovery would).

Entity declarations and external DTDs are refused (billion laughs, XXE): the parser never
resolves entities, loads a DTD or touches the network, and once it has read the prolog (at the
root element's start, before any HOST), a DTD that declares any entity or names an external
subset stops the parse. The check reads what libxml2 itself parsed, so no comment or
processing instruction before the DOCTYPE can hide a declaration from it; a quick look at the
raw prolog text refuses the common case before libxml2 sees it at all.

Numbers in attributes (``TN``, ``TMAX``, ``REPORTED``, ``LOCALTIME``) are Ganglia's uint32
seconds: anything else (``inf``, ``1e400``, ``-1``, ``2e10``) reads as None, and the raw
text is kept in ``RawHost.times`` so vm-snapshot can name it in a problem.

Over 500 lines because the streaming parser and its recovering twin share one grammar of
Ganglia's XML and one set of hostile-input checks.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from lxml import etree

from vmtools.errors import DataError

# The standard metrics of a guest's own gmond, used when its Domain-0 publishes nothing for it.
FALLBACK_METRICS = frozenset({"cpu_num", "mem_total", "cpu_user", "cpu_system", "cpu_nice",
                              "bytes_in", "bytes_out"})
CONTAINER_PREFIX = "container."

# METRIC children of one HOST: a Domain-0 of 1,000 guests publishes ~5,000, a gmond ~40. A
# HOST with more is a broken or spoofed sender: it is dropped, and read METRIC by METRIC on the
# way (never held whole), so memory stays flat whatever one HOST carries.
MAX_METRICS_PER_HOST = 50_000
# Recovery reads the whole input; it is bounded like a network answer.
MAX_RECOVER_BYTES = 512 * 2**20

# How much of the head to scan for a DOCTYPE with entity declarations or an external DTD.
_PROLOG_LIMIT = 1 << 20
_ROOT_START = re.compile(rb"<[A-Za-z_]")
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_EXTERNAL_DTD = re.compile(rb"<!DOCTYPE\s+[^\s\[>]+\s+(SYSTEM|PUBLIC)\b", re.IGNORECASE)


@dataclass
class RawHost:
    name: str
    ip: str = ""
    reported: int | None = None
    tn: int | None = None
    tmax: int | None = None
    line: int = 0
    metrics: dict[str, str] = field(default_factory=dict)   # NAME -> VAL
    times: dict[str, str] = field(default_factory=dict)     # REPORTED/TN/TMAX as sent
    # container.* metrics older than their TMAX (or their DMAX, when it is set): NAME ->
    # (TN, TMAX, DMAX). Only the late ones are kept: 40,000 guests' ages would cost memory.
    late: dict[str, tuple[int, int, int]] = field(default_factory=dict)


@dataclass
class Cluster:
    name: str
    localtime: int | None = None
    grid_localtime: int | None = None
    grid: str = ""
    hosts: list[RawHost] = field(default_factory=list)


@dataclass
class Dropped:
    kind: str          # "host", "cluster" or "input"
    name: str | None   # None when even the name could not be read
    where: str         # source:line:col
    reason: str


@dataclass
class GangliaDump:
    source: str
    clusters: list[Cluster] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


UINT32_MAX = 2**32 - 1


def _int(value: str | None) -> int | None:
    """A Ganglia uint32 attribute (seconds), or None when it is not one: not a number,
    non-finite, negative, a fraction's overflow or beyond 2**32 - 1."""
    if value is None:
        return None
    text = value.strip()
    if len(text) > 40:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or not 0 <= number <= UINT32_MAX:
        return None
    return int(number)


def _age(late: dict, name: str, tn_text: str, tmax_text: str | None,
         dmax_text: str | None) -> None:
    """Record ``name`` in ``late`` (a host's) when its TN is past its TMAX, or its DMAX when set
    (an attribute that is not a uint32 leaves the metric's age unknown: not late)."""
    tn, tmax, dmax = _int(tn_text), _int(tmax_text), _int(dmax_text)
    if tn is None or tmax is None:
        return
    if (tmax > 0 and tn > tmax) or (dmax is not None and dmax > 0 and tn > dmax):
        late[name] = (tn, tmax, dmax or 0)


def _wanted(name: str) -> bool:
    return name.startswith(CONTAINER_PREFIX) or name in FALLBACK_METRICS


def _read_host(elem, metrics: dict[str, str] | None = None,
               late: dict | None = None) -> RawHost:
    """The host of a HOST element; ``metrics``: what the streaming parser already took from
    its METRIC children (they are gone from ``elem`` by then)."""
    host = RawHost(name=elem.get("NAME", ""), ip=elem.get("IP", ""),
                   reported=_int(elem.get("REPORTED")), tn=_int(elem.get("TN")),
                   tmax=_int(elem.get("TMAX")), line=elem.sourceline or 0,
                   times={k: v for k in ("REPORTED", "TN", "TMAX")
                          if (v := elem.get(k)) is not None})
    if metrics is not None:
        host.metrics = metrics
        host.late = late if late is not None else {}
        return host
    for metric in elem.iterchildren("METRIC"):
        _take_metric(host.metrics, metric, host.late)
    return host


def _take_metric(metrics: dict[str, str], metric, late: dict) -> None:
    name = metric.get("NAME")
    if name and (name[0] == "c" or name in FALLBACK_METRICS) and _wanted(name):
        metrics[name] = metric.get("VAL", "")
        tn = metric.get("TN")
        if tn is not None and tn != "0" and name[0] == "c":
            _age(late, name, tn, metric.get("TMAX"), metric.get("DMAX"))


def _drop_read(elem) -> None:
    """Streaming: drop an element that has been read, and the siblings before it."""
    elem.clear(keep_tail=False)
    parent = elem.getparent()
    if parent is not None:
        while elem.getprevious() is not None:
            del parent[0]


# --------------------------------------------------------------------------- input guard

class _Head:
    """A file-like that replays the bytes already read (the prolog) before the rest."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head = head
        self.rest = rest
        self.total = len(head)

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size is None or size < 0 or size >= len(self.head):
                chunk, self.head = self.head, b""
            else:
                chunk, self.head = self.head[:size], self.head[size:]
            return chunk
        chunk = self.rest.read(size if size and size > 0 else 1 << 16)
        self.total += len(chunk)
        return chunk


def _line_col(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"{line}:{col}"


class EntityRefused(DataError):
    """A DTD that declares entities or names an external subset: never recovered from."""


def _check_dtd(root, source: str) -> None:
    """Refuse what libxml2 parsed in the prolog: an internal subset declaring any entity, or
    an external subset. Called at the root's start, before any element below it is read."""
    docinfo = root.getroottree().docinfo
    where = f"{source}:1:1"
    dtd = docinfo.internalDTD
    if dtd is not None and next(iter(dtd.iterentities()), None) is not None:
        raise EntityRefused("entity declarations are refused (entity expansion and external "
                            "entities are attacks, not Ganglia data)", where)
    if docinfo.system_url or docinfo.public_id:
        raise EntityRefused("an external DTD is refused (Ganglia sends its DTD inline)", where)


def _check_prolog(head: bytes, source: str) -> None:
    """Refuse entity declarations and external DTDs: gmond and gmetad never send them."""
    m = _ROOT_START.search(head)
    prolog = head[:m.start()] if m else head
    bad = _ENTITY_DECL.search(prolog)
    if bad:
        raise EntityRefused("entity declarations are refused (entity expansion and external "
                            "entities are attacks, not Ganglia data)",
                            f"{source}:{_line_col(head, bad.start())}")
    bad = _EXTERNAL_DTD.search(prolog)
    if bad:
        raise EntityRefused("an external DTD is refused (Ganglia sends its DTD inline)",
                        f"{source}:{_line_col(head, bad.start())}")


def _read_head(stream: BinaryIO) -> bytes:
    head = b""
    while len(head) < _PROLOG_LIMIT:
        chunk = stream.read(1 << 16)
        if not chunk:
            break
        head += chunk
        m = _ROOT_START.search(head)
        if m and b"<!" not in head[m.start():m.start() + 2]:
            break
    return head


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, dtd_validation=False, remove_comments=True,
                           remove_pis=True)


def _syntax_error(exc: etree.XMLSyntaxError, source: str, line_offset: int = 0) -> DataError:
    line, col = exc.position if exc.position else (exc.lineno or 0, exc.offset or 0)
    msg = re.sub(r", line \d+, column \d+$", "", exc.msg or str(exc)).strip()
    return DataError(f"malformed XML: {msg} (gmond/gmetad sent a broken document; "
                     "--recover keeps the hosts that parse)",
                     f"{source}:{line + line_offset}:{col}")


# --------------------------------------------------------------------------- strict, streaming

def parse_ganglia(stream: BinaryIO | bytes, source: str = "<input>", *,
                  recover: bool = False,
                  on_host: Callable[[Cluster, RawHost], None] | None = None) -> GangliaDump:
    """Parse one gmond or gmetad XML answer from a binary stream (or bytes).

    Strict by default: the first defect raises :class:`DataError` (``source:line:col``).
    With ``recover`` the whole input is read into memory so that a failed strict pass can be
    followed by a piecewise one (see :func:`recover_ganglia`).

    ``on_host(cluster, host)``, when given, receives each host as soon as it is read, and the
    host is not kept in ``cluster.hosts`` (so memory stays flat). It is ignored with
    ``recover``: hosts are then only known good once the whole input has been read.
    """
    if isinstance(stream, (bytes, bytearray)):
        stream = io.BytesIO(bytes(stream))
    head = _read_head(stream)
    if not head.strip():
        raise DataError("empty input: expected a Ganglia XML document from gmond or gmetad",
                        source)
    _check_prolog(head, source)
    if recover:
        data = head + stream.read(MAX_RECOVER_BYTES + 1)
        if len(data) > MAX_RECOVER_BYTES:
            raise DataError(f"larger than {MAX_RECOVER_BYTES // 2**20} MiB: too large to "
                            "recover from (a broken or hostile sender)", source)
        try:
            return _parse_strict(io.BytesIO(data), source)
        except EntityRefused:
            raise
        except DataError as exc:
            return recover_ganglia(data, source, exc)
    return _parse_strict(_Head(head, stream), source, on_host)


def _parse_strict(stream, source: str, on_host=None) -> GangliaDump:
    dump = GangliaDump(source=source)
    grids: list[tuple[str, int | None]] = []
    cluster: Cluster | None = None
    loose: Cluster | None = None   # HOSTs directly under GANGLIA_XML (the DTD allows it)
    events = etree.iterparse(stream, events=("start", "end"),
                             tag=("GANGLIA_XML", "GRID", "CLUSTER", "HOST", "METRIC"),
                             resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=True, remove_pis=True)
    root_checked = False
    metrics: dict[str, str] | None = None    # of the HOST being read
    late: dict = {}                          # its late container.* metrics
    count = 0
    try:
        for event, elem in events:
            if not root_checked:
                root_checked = True
                root = elem.getroottree().getroot()
                _check_root(root, source)
                _check_dtd(root, source)
            tag = elem.tag
            if tag == "METRIC":
                if event == "end":
                    if metrics is not None:
                        count += 1
                        if count <= MAX_METRICS_PER_HOST:
                            _take_metric(metrics, elem, late)
                    _drop_read(elem)
                continue
            if event == "start":
                if tag == "HOST":
                    metrics, count, late = {}, 0, {}
                elif tag == "CLUSTER":
                    top = grids[0][1] if grids else None
                    cluster = Cluster(name=elem.get("NAME", ""),
                                      localtime=_int(elem.get("LOCALTIME")),
                                      grid_localtime=top, grid=grids[-1][0] if grids else "")
                    dump.clusters.append(cluster)
                elif tag == "GRID":
                    grids.append((elem.get("NAME", ""), _int(elem.get("LOCALTIME"))))
                continue
            if tag == "HOST":
                host = _read_host(elem, metrics if metrics is not None else {}, late)
                metrics = None
                if count > MAX_METRICS_PER_HOST:
                    dump.dropped.append(Dropped(
                        "host", host.name[:200], f"{source}:{host.line}:1",
                        f"it carries {count} metrics, more than {MAX_METRICS_PER_HOST} (a "
                        "broken or spoofed sender)"))
                    _drop_read(elem)
                    continue
                if cluster is None:
                    if loose is None:
                        loose = Cluster(name="")
                        dump.clusters.append(loose)
                    owner = loose
                else:
                    owner = cluster
                if on_host is None:
                    owner.hosts.append(host)
                else:
                    on_host(owner, host)
            elif tag == "CLUSTER":
                cluster = None
            elif tag == "GRID":
                grids.pop()
            else:
                continue
            _drop_read(elem)
    except etree.XMLSyntaxError as exc:
        if getattr(stream, "total", 1) == 0:
            raise DataError("empty input: expected a Ganglia XML document", source) from None
        raise _syntax_error(exc, source) from None
    if not root_checked:
        root = getattr(events, "root", None)
        if root is None:
            raise DataError("no XML element found: expected a Ganglia XML document", source)
        _check_root(root, source)
        _check_dtd(root, source)
    return dump


def _check_root(root, source: str) -> None:
    if root is not None and root.tag != "GANGLIA_XML":
        raise DataError(f"not a Ganglia document: the root element is <{str(root.tag)[:40]}>, "
                        "expected <GANGLIA_XML> (is this gmond's or gmetad's port?)",
                        f"{source}:{root.sourceline or 1}:1")


# --------------------------------------------------------------------------- recovery

_TOKEN = re.compile(rb"<(/?)(GRID|CLUSTER|HOST)(?=[\s>/])")
_TAG_END = re.compile(rb">")
_NAME_ATTR = re.compile(rb'\bNAME="([^"<>]{0,200})"')


def _name_in(chunk: bytes) -> str | None:
    m = _NAME_ATTR.search(chunk[:2000])
    if not m:
        return None
    return m.group(1).decode("ascii", "replace")


def _host_piece(data: bytes, tokens: list[re.Match], i: int) -> tuple[bytes, bool, int]:
    """The bytes of the HOST element whose start tag is ``tokens[i]``, whether its
    ``</HOST>`` closes it, and the index of its last token."""
    start = tokens[i].start()
    nxt = tokens[i + 1] if i + 1 < len(tokens) else None
    if nxt is not None and nxt.group(1) == b"/" and nxt.group(2) == b"HOST":
        end = _TAG_END.search(data, nxt.end())
        return data[start:end.end() if end else len(data)], end is not None, i + 1
    return data[start:nxt.start() if nxt is not None else len(data)], False, i


def _piece_host(data: bytes, source: str, parser, offset: int, piece: bytes, complete: bool,
                dropped: list) -> RawHost | None:
    """The host a HOST piece at ``offset`` holds, or None with the reason in ``dropped``."""
    if not complete:
        dropped.append(Dropped("host", _name_in(piece), f"{source}:{_line_col(data, offset)}",
                               "the HOST element is cut off (no </HOST>)"))
        return None
    try:
        elem = etree.fromstring(piece, parser)
    except etree.XMLSyntaxError as exc:
        err = _syntax_error(exc, source)
        line, col = exc.position if exc.position else (exc.lineno or 1, 0)
        first_line = data.count(b"\n", 0, offset)
        col_text = col if line > 1 else col + offset - (data.rfind(b"\n", 0, offset) + 1)
        msg = err.message.split(" (gmond/gmetad")[0]
        dropped.append(Dropped("host", _name_in(piece),
                               f"{source}:{first_line + line}:{col_text}", msg))
        return None
    host = _read_host(elem)
    host.line = data.count(b"\n", 0, offset) + 1
    return host


def recover_ganglia(data: bytes, source: str, first_error: DataError | None = None) -> GangliaDump:
    """Piecewise parse: every HOST element and every CLUSTER/GRID start tag on its own.

    A HOST runs from ``<HOST`` to its ``</HOST>``; if another HOST, CLUSTER or the end comes
    first, the piece is broken (a truncated line) and dropped. A CLUSTER whose start tag does
    not parse is dropped with all its hosts.
    """
    dump = GangliaDump(source=source)
    parser = _parser()
    tokens = list(_TOKEN.finditer(data))
    grids: list[tuple[str, int | None]] = []
    cluster: Cluster | None = None
    skipping_cluster = False
    loose: Cluster | None = None

    def where(offset: int) -> str:
        return f"{source}:{_line_col(data, offset)}"

    def start_tag(m: re.Match, tag: str):
        end = _TAG_END.search(data, m.end())
        if end is None:
            return None, "the tag is cut off"
        text = data[m.start():end.end()]
        if text.endswith(b"/>"):
            text = text[:-2] + b">"
        try:
            return etree.fromstring(text + b"</" + tag.encode() + b">", parser), None
        except etree.XMLSyntaxError as exc:
            return None, re.sub(r", line \d+, column \d+$", "", exc.msg or str(exc))

    i = 0
    while i < len(tokens):
        m = tokens[i]
        closing, tag = m.group(1) == b"/", m.group(2).decode()
        if tag == "GRID":
            if closing:
                if grids:
                    grids.pop()
            else:
                elem, _ = start_tag(m, tag)
                grids.append((elem.get("NAME", "") if elem is not None else "",
                              _int(elem.get("LOCALTIME")) if elem is not None else None))
        elif tag == "CLUSTER":
            if closing:
                cluster, skipping_cluster = None, False
            else:
                elem, reason = start_tag(m, tag)
                if elem is None:
                    name = _name_in(data[m.start():m.start() + 2000])
                    dump.dropped.append(Dropped("cluster", name, where(m.start()),
                                                f"its CLUSTER tag does not parse: {reason}"))
                    cluster, skipping_cluster = None, True
                else:
                    cluster = Cluster(name=elem.get("NAME", ""),
                                      localtime=_int(elem.get("LOCALTIME")),
                                      grid_localtime=grids[0][1] if grids else None,
                                      grid=grids[-1][0] if grids else "")
                    skipping_cluster = False
                    dump.clusters.append(cluster)
        elif tag == "HOST" and not closing:
            piece, complete, i = _host_piece(data, tokens, i)
            host = None if skipping_cluster else \
                _piece_host(data, source, parser, m.start(), piece, complete, dump.dropped)
            if host is not None:        # (a skipped cluster's hosts went with its report)
                if cluster is None:
                    if loose is None:
                        loose = Cluster(name="")
                        dump.clusters.append(loose)
                    loose.hosts.append(host)
                else:
                    cluster.hosts.append(host)
        i += 1
    if cluster is not None or grids:
        dump.dropped.append(Dropped("input", None, where(len(data)),
                                    "the document ends before its closing tags (truncated)"))
    if not dump.clusters:
        if first_error is not None:
            raise first_error
        raise DataError("no CLUSTER or HOST could be read", source)
    return dump


__all__ = ["parse_ganglia", "recover_ganglia", "GangliaDump", "Cluster", "RawHost", "Dropped",
           "FALLBACK_METRICS"]
