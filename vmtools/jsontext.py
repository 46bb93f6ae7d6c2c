"""The canonical JSON text of a document, fast: exactly ``json.dumps(doc, indent=2,
ensure_ascii=True, allow_nan=False)``, written by the C encoder.

The standard library writes indented JSON in Python only (its C encoder does no indent):
a 150,000-guest plan took 5-6 s. Here each container whose members are all scalars (a
guest, a host, the placement) is one call of the C encoder whose item separator carries
the newline and the indent of its level; only the containers that hold containers are
walked in Python. Anything unusual (a key that is not a string, a float that is not
finite, a cycle, a type JSON does not know, no C encoder) goes to ``json.dumps`` itself,
so the text and the errors are the standard library's.

Also the reading side's walk (:func:`too_deep`, the nesting check of every document read)
and the one way a JSON path is written (:func:`join_path`), which it shares with
:mod:`vmtools.model`'s readers.
"""

from __future__ import annotations

import json
import math
import operator
from contextlib import contextmanager
from itertools import chain, compress, filterfalse, repeat
from json import encoder as _json_encoder
from typing import Any, Iterable, Iterator

_C_ENCODER = getattr(_json_encoder, "c_make_encoder", None)
_ESCAPE = _json_encoder.encode_basestring_ascii
_SCALARS = (str, int, float, bool, type(None))
_EXACT = frozenset(_SCALARS)
_STR = frozenset((str,))
_CONTAINERS = frozenset((dict, list, tuple))
_LEAF_KINDS = _EXACT | _CONTAINERS
_DICT = frozenset((dict,))
_levels: dict[int, Any] = {}


class _Unusual(Exception):
    """Something the fast path leaves to ``json.dumps``."""


def _flat(level: int):
    """The C encoder whose item separator starts a new line at ``level`` + 1."""
    enc = _levels.get(level)
    if enc is None:
        enc = _levels[level] = _C_ENCODER(None, _refuse, _ESCAPE, None, ": ",
                                          ",\n" + "  " * (level + 1), False, False, False)
    return enc


def _leaf(m: Any) -> bool:
    """A member the C encoder writes as the indented text has it: a scalar, or an empty
    container (``[]``, ``{}``)."""
    return isinstance(m, _SCALARS) or (isinstance(m, (dict, list, tuple)) and not m)


def _flat_dict(d: dict) -> bool:
    """Keys all strings, members all :func:`_leaf` (the common case tested in C)."""
    if not _STR.issuperset(map(type, d)):
        return False
    return _EXACT.issuperset(map(type, d.values())) or all(type(m) in _EXACT or _leaf(m)
                                                           for m in d.values())


def _flat_records(rows: Any) -> bool:
    """Every member a dict that is not empty and :func:`_flat_dict` (a list of records:
    guests, hosts, summary.load's entries), tested over all their keys and values at once
    (record by record, summary.load's 20,000 took 0.04 s). Only the exact types: anything
    else (a subclass) is left to the walk, which writes the same text."""
    if not _DICT.issuperset(map(type, rows)) or not all(rows) or \
            not _STR.issuperset(map(type, chain.from_iterable(rows))):
        return False
    values = list(chain.from_iterable(map(dict.values, rows)))
    kinds = set(map(type, values))
    return kinds <= _EXACT or (kinds <= _LEAF_KINDS and not any(compress(   # in C:
        values, map(_CONTAINERS.__contains__, map(type, values)))))  # no container but empty


def _refuse(obj: Any) -> Any:
    raise _Unusual


def dumps_indented(doc: Any) -> str:
    """``json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False)``, the same text."""
    if _C_ENCODER is None:
        return json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False)
    out: list[str] = []
    try:
        _emit(doc, 0, out, set())
    except (_Unusual, ValueError, RecursionError):
        return json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False)
    return "".join(out)


def _emit(obj: Any, level: int, out: list[str], open_ids: set[int]) -> None:
    if isinstance(obj, dict):
        members = obj.values()
    elif isinstance(obj, (list, tuple)):
        members = obj
    else:
        out.append("".join(_flat(level)(obj, 0)))
        return
    if not members:
        out.append("{}" if isinstance(obj, dict) else "[]")
        return
    inner, close = "\n" + "  " * (level + 1), "\n" + "  " * level
    if _EXACT.issuperset(map(type, members)) or all(type(m) in _EXACT or _leaf(m)
                                                    for m in members):
        if isinstance(obj, dict) and not all(isinstance(k, str) for k in obj):
            raise _Unusual
        text = "".join(_flat(level)(obj, 0))
        out.append(text[0] + inner + text[1:-1] + close + text[-1])
        return
    if _shared and not isinstance(obj, dict):
        text = _shared_records(obj, level)
        if text is not None:
            out.append(text)
            return
    if not isinstance(obj, dict) and _flat_records(obj):
        # Records (guests, hosts): one call for all, the separators between them mended.
        # A raw newline is never inside an encoded string, so "}" + sep + "{" is a boundary.
        deeper = ",\n" + "  " * (level + 2)
        text = "".join(_flat(level + 1)(obj, 0))
        text = text[2:-2].replace("}" + deeper + "{", close + "  }," + inner + "{" + deeper[1:])
        out.append("[" + inner + "{" + deeper[1:] + text + inner + "}" + close + "]")
        return
    if id(obj) in open_ids:
        raise _Unusual                      # a cycle: json.dumps says so
    open_ids.add(id(obj))
    sep = inner
    if isinstance(obj, dict):
        out.append("{")
        for k, v in obj.items():
            if not isinstance(k, str):
                raise _Unusual
            out.append(sep + _ESCAPE(k) + ": ")
            _emit(v, level + 1, out, open_ids)
            sep = "," + inner
        out.append(close + "}")
    else:
        out.append("[")
        for v in obj:
            out.append(sep)
            _emit(v, level + 1, out, open_ids)
            sep = "," + inner
        out.append(close + "]")
    open_ids.discard(id(obj))


def by_key(d: dict) -> dict:
    """``dict(sorted(d.items()))``, the same dict: a copy in the order of its keys, sorted
    only when they are not in it already (a plan's placement of 150,000 guests, made in the
    order of their names: its items sorted again took 0.06 s)."""
    keys = list(d)
    return dict(d) if keys == sorted(keys) else dict(sorted(d.items()))


def join_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def too_deep(obj: Any, max_depth: int) -> str | None:
    """The JSON path of the first value nested deeper than ``max_depth``, or None. A
    container of scalars alone within the depth is not walked (150,000 guests' objects
    walked one by one, their paths written, took a second); paths are written only for the
    value returned."""
    stack: list[tuple] = [(obj, None, "", 0)]      # (value, parent's entry, key, depth)
    while stack:
        entry = stack.pop()
        value, _, _, depth = entry
        if depth > max_depth:
            path = _path_of(entry)
            return path if len(path) <= 60 else path[:30] + "..." + path[-20:]
        if isinstance(value, dict):
            pairs: Iterable = ((str(k)[:40], v) for k, v in value.items())
        elif isinstance(value, list):
            pairs = enumerate(value)
        else:
            continue
        for k, v in pairs:
            if isinstance(v, (dict, list)) and not (
                    depth < max_depth
                    and _EXACT.issuperset(map(type, v.values() if isinstance(v, dict) else v))):
                stack.append((v, entry, k, depth + 1))
    return None


def _path_of(entry: tuple) -> str:
    keys = []
    while entry[1] is not None:
        keys.append(entry[2])
        entry = entry[1]
    path = ""
    for k in reversed(keys):
        path = join_path(path, k)
    return path


_DIGITS = str.maketrans("123456789E", "000000000e")


def plain_numbers(text: str, max_digits: int) -> bool:
    """True when no number in the JSON ``text`` has a run of more than ``max_digits``
    digits (an integer too long) or an exponent of 3 digits (a float past 1e308): then a
    reader needs no Python hook per number (0.4 s at 150,000 guests) to refuse them. A
    name that looks so only sends the text the slow way."""
    t = text.translate(_DIGITS)
    return "0" * (max_digits + 1) not in t and not any(
        e in t for e in ("0e000", "0e-000", "0e+000"))



# --------------------------------------------------------------------------- digest text

_COMPACT_SORTED = None if _C_ENCODER is None else _C_ENCODER(
    None, _refuse, _ESCAPE, None, ":", ",", True, False, False)
_NUMBERS, _FLOAT = frozenset((int, float)), frozenset((float,))
_WORD_KINDS = frozenset((bool, type(None)))
_WORDS = {True: "true", False: "false", None: "null"}
_shared: dict[int, tuple[list, list[str], list[list[str]]]] | None = None
SHARED_ROWS = 1000      # lists of records shorter than this are written twice, as before


@contextmanager
def shared_columns() -> Iterator[None]:
    """Within it, a long list of records (guests, hosts) that :func:`dumps_sorted` writes
    keeps its values' text, column by column, for :func:`dumps_indented` to write the same
    list again without encoding them twice: vm-plan's origin, whose digest is its sorted
    compact text and which the plan then holds indented (150,000 guests: about 0.2 s).
    Nothing may change the document between the two."""
    global _shared
    was, _shared = _shared, {}
    try:
        yield
    finally:
        _shared = was


def dumps_sorted(doc: Any) -> str:
    """``json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
    allow_nan=False)``, the same text (what a document's digest hashes); within
    :func:`shared_columns`, long lists of records written column by column and kept."""
    if _shared is None or _COMPACT_SORTED is None:
        return _json_sorted(doc)
    try:
        return _sorted_text(doc, 0)
    except (_Unusual, ValueError, TypeError, RecursionError, OverflowError):
        return _json_sorted(doc)


def _json_sorted(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def _sorted_text(obj: Any, depth: int) -> str:
    if depth > 100:
        raise _Unusual                      # deep, or a cycle: json.dumps says which
    if type(obj) is dict and obj and not _EXACT.issuperset(map(type, obj.values())):
        if not _STR.issuperset(map(type, obj)):
            raise _Unusual
        return "{" + ",".join(_ESCAPE(k) + ":" + _sorted_text(v, depth + 1)
                              for k, v in sorted(obj.items())) + "}"
    if type(obj) is list and obj and not _EXACT.issuperset(map(type, obj)):
        cols = _columns(obj) if len(obj) >= SHARED_ROWS else None
        if cols is None:
            return "[" + ",".join(_sorted_text(m, depth + 1) for m in obj) + "]"
        keys, values = cols
        _shared[id(obj)] = (obj, keys, values)          # type: ignore[index]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        text = _interleave([("," if n else "{") + _ESCAPE(keys[i]) + ":"
                            for n, i in enumerate(order)], [values[i] for i in order], "},")
        return "[" + text[:-1] + "]"
    return "".join(_COMPACT_SORTED(obj, 0))


def _interleave(before: list[str], values: list[list[str]], after: str) -> str:
    """Each row's text: ``before[0] + values[0][row] + before[1] + ... + after``, the rows
    one after the other. Joined in C from the columns (str.format with a template per row
    took four times as long at 150,000 rows)."""
    rows = len(values[0])
    parts: list = []
    for b, column in zip(before, values):
        parts += (repeat(b, rows), column)
    parts.append(repeat(after, rows))
    return "".join(chain.from_iterable(zip(*parts)))


def _columns(rows: list) -> tuple[list[str], list[list[str]]] | None:
    """A list of records with the same keys and plain scalar values as its keys (the first
    record's order) and each key's values as the C encoder writes them; None when it is
    not one."""
    if not _DICT.issuperset(map(type, rows)):
        return None
    keys = list(rows[0])
    if not keys or not _STR.issuperset(map(type, keys)) or set(map(len, rows)) != {len(keys)}:
        return None
    values = []
    for k in keys:
        try:
            col = list(map(operator.itemgetter(k), rows))      # the same keys in every row
        except KeyError:
            return None
        kinds = set(map(type, col))
        if kinds == _STR:
            values.append(list(map(_ESCAPE, col)))
        elif kinds <= _NUMBERS:
            if not all(map(math.isfinite, col)):
                raise ValueError("not finite")  # json.dumps refuses it, and says so
            values.append(_floats(col) if kinds == _FLOAT else list(map(repr, col)))
        elif kinds <= _WORD_KINDS:             # only true, false and null
            values.append(list(map(_WORDS.__getitem__, col)))
        else:
            return None
    return keys, values


def _floats(col: list[float]) -> list[str]:
    """``list(map(repr, col))``, each distinct figure written once when figures repeat (a
    float's repr is the dear part of a column: 150,000 guests' CPU figures, 0.025 s). 0.0
    and -0.0 are one key of a dict: a column with both is written figure by figure."""
    distinct = set(col)
    if len(distinct) * 2 > len(col) or (0.0 in distinct and len(set(map(
            repr, filterfalse(None, col)))) > 1):
        return list(map(repr, col))
    return list(map(dict(zip(distinct, map(repr, distinct))).__getitem__, col))


def _shared_records(obj: list, level: int) -> str | None:
    """The indented text of a list of records :func:`dumps_sorted` wrote within
    :func:`shared_columns`, from the values' text it kept; None when it kept none or a
    record's keys are not in the first's order."""
    kept = _shared.pop(id(obj), None) if _shared else None
    if kept is None or kept[0] is not obj:
        return None
    keys = tuple(kept[1])
    if not all(map(keys.__eq__, map(tuple, obj))):
        return None
    inner, deeper = "\n" + "  " * (level + 1), "\n" + "  " * (level + 2)
    text = _interleave([("{" if i == 0 else ",") + deeper + _ESCAPE(k) + ": "
                        for i, k in enumerate(keys)], kept[2], inner + "}," + inner)
    return "[" + inner + text[:-len(inner) - 1] + "\n" + "  " * level + "]"
