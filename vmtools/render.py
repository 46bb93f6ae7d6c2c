"""Tables for ``--format table``: one function per document, built with tabulate."""

from __future__ import annotations

from tabulate import tabulate

TABLEFMT = "simple"


def table(rows: list[list], headers: list[str], title: str | None = None) -> str:
    text = tabulate(rows, headers=headers, tablefmt=TABLEFMT, floatfmt=".2f",
                    disable_numparse=True) if rows else "(none)"
    return f"{title}\n{text}\n" if title else text + "\n"


def pct(used: float, capacity: float) -> str:
    return f"{100.0 * used / capacity:.0f}%" if capacity else "-"
