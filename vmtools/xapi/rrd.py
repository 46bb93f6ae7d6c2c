"""Parse XAPI's ``/rrd_updates`` export (rrdtool ``xport`` XML) into per-object averages.

The document (``ocaml/libs/xapi-rrd/lib/rrd_updates.ml``)::

    <xport><meta><start>..</start><step>5</step><end>..</end><rows>N</rows>
      <columns>M</columns><legend><entry>AVERAGE:vm:<uuid>:cpu0</entry>...</legend></meta>
      <data><row><t>1213617600</t><v>0.0282</v>...</row>...</data></xport>

:func:`parse_rrd_updates` returns ``{("vm"|"host", uuid): {"cpu0": mean, "vif_0_rx": mean,
...}}``: the mean of each column over the rows whose time is within the window, NaN and
missing values left out (a column with no value at all is absent). Malformed XML, a DOCTYPE
(no entity expansion), a row whose width is not the legend's, a value that is not a number:
:class:`~vmtools.errors.DataError` naming where.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from vmtools.errors import DataError

MAX_BYTES = 64 * 1024 * 1024


def parse_rrd_updates(data: bytes, where: str, since: float | None = None
                      ) -> dict[tuple[str, str], dict[str, float]]:
    return parse_rrd_export(data, where, since)[0]


def parse_rrd_export(data: bytes, where: str, since: float | None = None
                     ) -> tuple[dict[tuple[str, str], dict[str, float]],
                                dict[str, list[tuple[float, float]]]]:
    """(:func:`parse_rrd_updates`'s means, and per guest uuid its CPU series: for each row
    within the window whose every ``cpuN`` column has a value, ``(time, sum of cpuN)``,
    oldest first)."""
    if len(data) > MAX_BYTES:
        raise DataError(f"rrd_updates: more than {MAX_BYTES} bytes", where)
    head = data[:2048].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise DataError("rrd_updates: a DOCTYPE or ENTITY is not allowed", where)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DataError(f"rrd_updates: not well-formed XML ({exc})", where) from None
    if root.tag != "xport":
        raise DataError(f"rrd_updates: expected <xport>, got <{root.tag[:40]}>", where)
    legend = [e.text or "" for e in root.findall("./meta/legend/entry")]
    keys: list[tuple[str, str, str] | None] = []
    for entry in legend:
        parts = entry.split(":")
        # CF:kind:uuid:name (the name may itself hold ':' in some plugins' sources)
        if len(parts) >= 4 and parts[1] in ("vm", "host"):
            keys.append((parts[1], parts[2], ":".join(parts[3:])))
        else:
            keys.append(None)
    sums: dict[tuple[str, str, str], list[float]] = {}
    cpu_cols: dict[str, list[int]] = {}
    for j, key in enumerate(keys):
        if key is not None and key[0] == "vm" and key[2][:3] == "cpu" and key[2][3:].isdigit():
            cpu_cols.setdefault(key[1], []).append(j)
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(root.findall("./data/row")):
        t_el = row.find("t")
        values = row.findall("v")
        try:
            t = float(t_el.text) if t_el is not None and t_el.text else None
        except ValueError:
            raise DataError(f"rrd_updates: row {i}: time {t_el.text[:30]!r} is not a number",
                            where) from None
        if len(values) != len(legend):
            raise DataError(f"rrd_updates: row {i} has {len(values)} values for "
                            f"{len(legend)} legend entries", where)
        if since is not None and t is not None and t < since:
            continue
        row_values: list[float] = []
        for key, v in zip(keys, values):
            if key is None:
                continue
            text = (v.text or "").strip()
            try:
                x = float(text)
            except ValueError:
                raise DataError(f"rrd_updates: row {i}: value {text[:30]!r} of {key[2]} is "
                                "not a number", where) from None
            row_values.append(x)
            if math.isfinite(x):
                acc = sums.setdefault(key, [0.0, 0])
                acc[0] += x
                acc[1] += 1
        if t is not None and math.isfinite(t):
            full = dict(zip([j for j, k in enumerate(keys) if k is not None], row_values))
            for uuid, cols in cpu_cols.items():
                got = [full.get(j, math.nan) for j in cols]
                if all(math.isfinite(g) and g >= 0 for g in got):
                    series.setdefault(uuid, []).append((t, sum(got)))
    out: dict[tuple[str, str], dict[str, float]] = {}
    for (kind, uuid, name), (total, n) in sums.items():
        if n:
            out.setdefault((kind, uuid), {})[name] = total / n
    return out, {uuid: sorted(points) for uuid, points in series.items()}
