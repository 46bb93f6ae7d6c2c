"""Text from the hosts is data: the one escaping every terminal and report path uses.

Error texts of ``xl``/``xm`` over SSH, xend's answers, host and guest names read from a
state file: any of them may carry ``ESC[2J`` or a carriage return. :func:`printable` turns
every character that is not printable (controls, escapes, line and paragraph separators)
into ``\\xNN``/``\\uNNNN``, so a host can never clear the screen, colour a line or set the
window title of the operator who reads its output.
"""

from __future__ import annotations

from typing import Any

# ASCII text (every JSON document vmtools prints) is checked at C speed: its bytes with the
# printable ones deleted (bytes.translate) must leave nothing; a 39 MB plan must not be walked
# character by character (a regular expression over it took 0.1-0.2 s).
_PRINTABLE_ASCII = bytes(range(0x20, 0x7f))
_PRINTABLE_ASCII_AND_NEWLINE = _PRINTABLE_ASCII + b"\n"


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def printable(value: Any, *, newlines: bool = False) -> str:
    """``str(value)`` with every non-printable character escaped (``newlines``: keep ``\\n``
    for multi-line text that is ours, escaping only what is inside)."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        if not text.encode("ascii").translate(
                None, _PRINTABLE_ASCII_AND_NEWLINE if newlines else _PRINTABLE_ASCII):
            return text
    elif text.isprintable():
        return text
    elif newlines and all(line.isprintable() for line in text.split("\n")):
        return text
    return "".join(ch if ch.isprintable() or (newlines and ch == "\n") else _escape(ch)
                   for ch in text)


def printable_ascii(text: str) -> bytes | None:
    """``text`` as ASCII bytes when every character of it is printable or a newline (what
    :func:`printable` with ``newlines`` would leave as it is), else None: the bytes a writer
    needs anyway, checked once (a 39 MB plan encoded once, not twice)."""
    if not text.isascii():
        return None
    data = text.encode("ascii")
    return None if data.translate(None, _PRINTABLE_ASCII_AND_NEWLINE) else data


def one_line(value: Any) -> str:
    """A message on one line: newlines become spaces, the rest as :func:`printable`."""
    text = value if isinstance(value, str) else str(value)
    return printable(" ".join(text.split("\n")))
