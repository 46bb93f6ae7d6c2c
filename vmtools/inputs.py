"""Opening and reading a command's input: a file, or ``-`` for standard input (with a notice
when stdin is a terminal, so a user who forgot the pipe knows why nothing happens).

Every file vmtools reads goes through :func:`read_file` (documents, constraints, host maps,
settings, power models, state files, traces): read with a size limit, decoded as UTF-8, any
failure one :class:`~vmtools.errors.DataError` naming the file (exit 65), never a
MemoryError. A file that cannot be opened is a :class:`~vmtools.errors.UsageError` naming it
(the path came from the command line or a setting). ``vmtools.model.load_file`` adds JSON and
the document's own validation on top.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import BinaryIO

from vmtools.errors import DataError, UsageError

MIB = 2**20
# A snapshot of 100,000 guests is ~20 MiB of JSON: ten times that is no vmtools document.
MAX_DOCUMENT_BYTES = 256 * MIB
# Constraints, host maps, settings, power models, state files: written by hand or by vmtools.
MAX_FILE_BYTES = 16 * MIB


def open_input(path: str, prog: str, what: str = "input") -> BinaryIO:
    """A binary stream on ``path`` (``-``: standard input)."""
    if path == "-":
        if sys.stdin is None:
            raise UsageError(f"no {what} on standard input")
        if sys.stdin.isatty():
            print(f"{prog}: reading {what} from standard input (end with Ctrl-D)",
                  file=sys.stderr)
        return sys.stdin.buffer
    if "\0" in str(path):
        raise UsageError(f"{what} path {str(path)!r} holds a NUL character")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


def check_private(path: str, what: str = "", st: os.stat_result | None = None
                  ) -> os.stat_result:
    """The one rule for a file that holds a secret (a password, a token, credentials), as ssh
    has it for a key: a regular file, owned by root or by the user running vmtools, that its
    group and others may neither read nor write. ``st``: its status when the caller opened it
    already (fstat, no race). Anything else is a :class:`UsageError` (exit 2) that says what
    to do; the content is never read here."""
    name = f"{what} {path}" if what else path
    if st is None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UsageError(f"{name}: no such file") from None
        except OSError as exc:
            raise UsageError(f"{name}: {exc.strerror}") from None
    import stat
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{name}: not a regular file")
    if st.st_uid not in (0, os.geteuid()):
        raise UsageError(f"{name}: owned by uid {st.st_uid}, not by root or the user "
                         "running vmtools (chown it)")
    if st.st_mode & 0o077:
        raise UsageError(f"{name}: mode {stat.S_IMODE(st.st_mode):04o} lets others read or "
                         f"change it; chmod 600 {path}")
    return st


def input_name(path: str) -> str:
    """How messages name the input."""
    return "<stdin>" if path == "-" else str(path)


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB and limit % MIB == 0 else f"{limit} bytes"


def read_limited(stream: BinaryIO, name: str, what: str = "input",
                 limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """At most ``limit`` bytes of ``stream``; more is a :class:`DataError` naming ``name``."""
    try:
        data = stream.read(limit + 1)
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}", name) from None
    except MemoryError:
        raise DataError(f"{what} does not fit in memory", name) from None
    if data is None:
        data = b""
    if len(data) > limit:
        raise DataError(f"{what} larger than {_size(limit)}: not a vmtools {what}", name)
    return data


def decode(data: bytes, name: str, what: str = "input") -> str:
    """UTF-8 text, or a :class:`DataError` naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} is not UTF-8 text (byte {exc.start})", name) from None


def read_file(path: str, what: str = "input", *, limit: int = MAX_FILE_BYTES,
              prog: str = "vmtools") -> str:
    """The text of ``path`` (``-``: standard input), bounded and decoded (see the module)."""
    stream = open_input(path, prog, what)
    name = input_name(path)
    try:
        data = read_limited(stream, name, what, limit)
    finally:
        if path != "-":
            stream.close()
    return decode(data, name, what)


# --------------------------------------------------------------------------- a program's output

class OutputTooLarge(Exception):
    """A program printed more than its limit; it has been killed."""


class OutputDeadline(Exception):
    """A program did not finish within its time; it has been killed."""


def kill_process(proc: subprocess.Popen) -> None:
    """Kill ``proc``'s process group (it was started with ``start_new_session``) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    proc.wait()


def read_process(proc: subprocess.Popen, timeout: float, limit: int,
                 err_limit: int = 64 * 2**10) -> tuple[bytes, bytes]:
    """stdout and stderr of ``proc`` (both piped), read together within ``timeout`` overall:
    stdout at most ``limit`` bytes (more: :class:`OutputTooLarge`), stderr keeping its first
    ``err_limit``; past the time, :class:`OutputDeadline`. Either way the process is killed.
    Unlike ``communicate()``, memory stays bounded whatever the program prints."""
    import selectors
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    with sel:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                kill_process(proc)
                raise OutputDeadline()
            for key, _ in sel.select(min(left, 1.0)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                if key.data is out:
                    if len(out) + len(chunk) > limit:
                        kill_process(proc)
                        raise OutputTooLarge()
                    out += chunk
                elif len(err) < err_limit:
                    err += chunk[:err_limit - len(err)]
    try:
        proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill_process(proc)
        raise OutputDeadline() from None
    proc.stdout.close()
    proc.stderr.close()
    return bytes(out), bytes(err)
