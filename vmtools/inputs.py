"""Opening a command's input: a file, or ``-`` for standard input (with a notice when stdin is
a terminal, so a user who forgot the pipe knows why nothing happens). Errors are
:class:`~vmtools.errors.UsageError` lines naming the file."""

from __future__ import annotations

import sys
from typing import BinaryIO

from vmtools.errors import UsageError


def open_input(path: str, prog: str, what: str = "input") -> BinaryIO:
    """A binary stream on ``path`` (``-``: standard input)."""
    if path == "-":
        if sys.stdin is None:
            raise UsageError(f"no {what} on standard input")
        if sys.stdin.isatty():
            print(f"{prog}: reading {what} from standard input (end with Ctrl-D)",
                  file=sys.stderr)
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


def input_name(path: str) -> str:
    """How messages name the input."""
    return "<stdin>" if path == "-" else path
