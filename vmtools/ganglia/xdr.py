"""gmond's wire protocol (Ganglia >= 3.1, ``lib/gm_protocol.x``): pure XDR encode and decode.

No ``xdrlib`` (removed from the standard library in Python 3.13): XDR is big-endian 4-byte
units; a string is its byte length, the bytes, and zero padding to a multiple of 4.

Every packet starts with a message id and a metric id (``string host, string name,
bool spoof``). With ``spoof`` the host string is ``"IP:hostname"``; without it gmond names the
host by the packet's source address.

- 128 metadata: ``string type, string name, string units, uint slope, uint tmax, uint dmax,
  extra_data<>`` (pairs of strings: ``SPOOF_HOST``, ``SPOOF_HEARTBEAT``, ``CLUSTER``,
  ``GROUP``..., ``DESC``, ``TITLE``, in the order gmetric sends them);
- 129..135 values: ``string fmt`` then the value (u_short, short, int, u_int, string,
  float, double); gmond prints typed values with the packet's ``fmt``;
- 136 metadata request (gmond asks for metadata it lacks).

vm-gmetric's packets are byte for byte those ``/usr/bin/gmetric`` 3.x sends for the same
arguments (tests/test_gmetric_lab.py compares them).
"""

from __future__ import annotations

import struct
from typing import Iterable, NamedTuple

from vmtools.errors import DataError

METADATA = 128
USHORT, SHORT, INT, UINT, STRING, FLOAT, DOUBLE = 129, 130, 131, 132, 133, 134, 135
METADATA_REQUEST = 136

# gmond's XDR buffer: 1500 (Ethernet MTU) - 28 (IP + UDP) - 8 = 1464 bytes.
MAX_PACKET = 1464

SLOPES = {"zero": 0, "positive": 1, "negative": 2, "both": 3, "unspecified": 4,
          "derivative": 5}
TYPES = ("string", "int8", "uint8", "int16", "uint16", "int32", "uint32", "float", "double")

_VALUE_CODECS = {USHORT: ">I", SHORT: ">i", INT: ">i", UINT: ">I", FLOAT: ">f",
                 DOUBLE: ">d"}
_DEFAULT_FMT = {USHORT: "%hu", SHORT: "%hd", INT: "%d", UINT: "%u", STRING: "%s",
                FLOAT: "%f", DOUBLE: "%lf"}


class PacketTooLarge(DataError):
    """A packet over gmond's 1464-byte XDR buffer (gmond would drop it)."""


# ----------------------------------------------------------------------------- encode

def _uint(n: int) -> bytes:
    return struct.pack(">I", n)


def _string(text: str | bytes) -> bytes:
    try:
        data = text.encode("ascii") if isinstance(text, str) else text
    except UnicodeEncodeError:
        raise DataError(f"not ASCII: {text!r} (gmond mangles other bytes)") from None
    return _uint(len(data)) + data + b"\0" * (-len(data) % 4)


def _metric_id(host: str, name: str, spoof: bool) -> bytes:
    return _string(host) + _string(name) + _uint(1 if spoof else 0)


def _checked(packet: bytes, name: str) -> bytes:
    if len(packet) > MAX_PACKET:
        raise PacketTooLarge(f"packet of {len(packet)} bytes for metric {name!r}: gmond "
                             f"accepts at most {MAX_PACKET}", name)
    return packet


def encode_metadata(host: str, name: str, type: str, units: str = "", slope: str = "both",
                    tmax: int = 60, dmax: int = 0, spoof: bool = False,
                    extra: Iterable[tuple[str, str]] = ()) -> bytes:
    """A 128 metadata packet. ``type`` is gmetric's type name (``uint32``, ``string``...)."""
    if type not in TYPES:
        raise DataError(f"unknown metric type {type!r} (one of {', '.join(TYPES)})", name)
    pairs = list(extra)
    body = [_uint(METADATA), _metric_id(host, name, spoof), _string(type), _string(name),
            _string(units), _uint(SLOPES.get(slope, SLOPES["unspecified"])), _uint(int(tmax)),
            _uint(int(dmax)), _uint(len(pairs))]
    body += [_string(k) + _string(v) for k, v in pairs]
    return _checked(b"".join(body), name)


def encode_value(host: str, name: str, value: object, kind: int = STRING, spoof: bool = False,
                 fmt: str | None = None) -> bytes:
    """A value packet (129..135); ``kind`` is the message id, ``fmt`` gmond's printf format."""
    fmt = _DEFAULT_FMT[kind] if fmt is None else fmt
    head = _uint(kind) + _metric_id(host, name, spoof) + _string(fmt)
    if kind == STRING:
        return _checked(head + _string(str(value)), name)
    try:
        packed = struct.pack(_VALUE_CODECS[kind], value)
    except KeyError:
        raise DataError(f"unknown value message id {kind}", name) from None
    except struct.error as exc:
        raise DataError(f"value {value!r} does not fit message {kind}: {exc}", name) from None
    return _checked(head + packed, name)


# ----------------------------------------------------------------------------- decode

class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DataError(f"truncated packet: need {n} bytes at offset {self.pos}",
                            f"byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def string(self) -> str:
        n = self.uint()
        if n > len(self.data):
            raise DataError(f"string length {n} beyond the packet", f"byte {self.pos - 4}")
        raw = self.take(n)
        self.take(-n % 4)
        return raw.decode("latin-1")


class Packet(NamedTuple):
    id: int
    host: str
    name: str
    spoof: bool
    fields: dict


def decode(data: bytes) -> Packet:
    """One packet as ``Packet(id, host, name, spoof, fields)``. Metadata ``fields``: type,
    units, slope (name), tmax, dmax, extra (list of pairs); value ``fields``: fmt, value."""
    r = _Reader(data)
    kind = r.uint()
    host, name, spoof = r.string(), r.string(), bool(r.uint())
    fields: dict = {}
    if kind == METADATA:
        fields["type"] = r.string()
        r.string()  # the name, again
        fields["units"] = r.string()
        slope = r.uint()
        fields["slope"] = next((k for k, v in SLOPES.items() if v == slope), str(slope))
        fields["tmax"], fields["dmax"] = r.uint(), r.uint()
        fields["extra"] = [(r.string(), r.string()) for _ in range(r.uint())]
    elif kind == STRING:
        fields["fmt"], fields["value"] = r.string(), r.string()
    elif kind in _VALUE_CODECS:
        fields["fmt"] = r.string()
        codec = _VALUE_CODECS[kind]
        fields["value"] = struct.unpack(codec, r.take(struct.calcsize(codec)))[0]
    elif kind != METADATA_REQUEST:
        raise DataError(f"unknown message id {kind}", "byte 0")
    if r.pos != len(data):
        raise DataError(f"{len(data) - r.pos} bytes after the end of the message",
                        f"byte {r.pos}")
    return Packet(kind, host, name, spoof, fields)
