"""What every vmtools command shares: the app factory, common options, input, output, errors.

A command module does::

    app = make_app("vm-plan", __doc__)

    @app.command()
    def plan(file: InputFile = "-", fmt: Format = OutputFormat.json, output: Output = None,
             verbose: Verbose = 0, quiet: Quiet = False, debug: Debug = False,
             version: Version = False) -> None:
        with guard("vm-plan", verbose, quiet, debug):
            doc = read_document("vm-plan", file, Snapshot)
            ...
            emit(text, output)

    main = entry_point(app, "vm-plan")

Settings come from flags, then ``VMTOOLS_<COMMAND>_<OPTION>`` environment variables, then the
``[<command>]`` table (and ``[common]``) of ``/etc/vmtools/vmtools.toml`` and
``$XDG_CONFIG_HOME/vmtools/vmtools.toml``, then defaults (``vmtools.cli._settings``).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from vmtools import __version__, atomic
from vmtools.errors import (EXIT_CODES_SHORT, EXIT_DATAERR, EXIT_SOFTWARE, DataError,
                            LocalFailure, UsageError, VmtoolsError)
from vmtools.inputs import MAX_DOCUMENT_BYTES, MAX_FILE_BYTES, decode, input_name, open_input, read_limited
from vmtools.model import loads
from vmtools.text import one_line, printable, printable_ascii

log = logging.getLogger("vmtools")

EXIT_CODES_EPILOG = "Exit codes: " + "; ".join(
    f"{code} {text}" for code, text in EXIT_CODES_SHORT.items()) + "."


class OutputFormat(str, enum.Enum):
    json = "json"
    table = "table"
    wide = "wide"


def _format_callback(value: Any) -> Any:
    """``-f wide`` is ``-f table`` without the 80-column limit."""
    if value == OutputFormat.wide:
        from vmtools import render
        render.set_width(None)
        return OutputFormat.table
    return value


def make_app(prog: str, help_text: str | None) -> typer.Typer:
    """One typer app per console script, all with the same settings."""
    return typer.Typer(
        name=prog,
        help=help_text,
        epilog=EXIT_CODES_EPILOG,
        add_completion=False,
        no_args_is_help=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"],
                          "max_content_width": 100},
    )


def _version_callback(value: bool) -> None:
    if value:
        prog = os.path.basename(sys.argv[0]) or "vmtools"
        typer.echo(f"{prog} {__version__}")
        raise typer.Exit(0)


# The options every command has (vmtools(7)). Declared once, used as parameter annotations.
Verbose = Annotated[int, typer.Option("-v", "--verbose", count=True,
                                      help="More detail on stderr; repeat for debug logs.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Only errors on stderr.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")]
Version = Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                       help="Print the version and exit.")]
Format = Annotated[OutputFormat, typer.Option(
    "-f", "--format", callback=_format_callback,
    help="json (the document), table (for people, fits 80 columns) or wide (the table with "
         "every column, as wide as it needs).")]
Output = Annotated[Optional[Path], typer.Option(
    "-o", "--output", metavar="FILE",
    help="Write the document to FILE (atomically: all or nothing) instead of stdout.")]
InputFile = Annotated[str, typer.Argument(metavar="FILE",
                                          help="Input document; - (the default) reads stdin.")]
TextfileDir = Annotated[Optional[Path], typer.Option(
    "--textfile-dir", metavar="DIR",
    help="At the end of the run, write DIR/<command>.prom (atomically) for node_exporter's "
         "textfile collector: when it ran, its exit code and duration, its last success "
         "(vmtools-formats(5), TEXTFILE METRICS).")]


# --------------------------------------------------------------------------- errors

class _EscapingFormatter(logging.Formatter):
    """Log lines quote what hosts answered (an ``xl migrate`` error, a host name from a
    state file): control characters are shown escaped, never sent to the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), newlines=True)


class _Stderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a line is logged, not as it was when logging was
    set up: a command run in process (vm-replay's settings, a test's runner) swaps stderr and
    closes its copy afterwards, and a handler kept on that copy failed every later line."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):                            # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(prog: str, verbose: int, quiet: bool, debug: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[
        min(verbose + (1 if debug else 0), 2)]
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(_EscapingFormatter(f"{prog}: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("pulp", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # paramiko logs its transport thread's tracebacks at ERROR; vmtools reports the same
    # failure itself in one line, so paramiko speaks only with --debug.
    logging.getLogger("paramiko").setLevel(logging.DEBUG if debug else logging.CRITICAL)


def error_line(prog: str, message: str) -> str:
    """One line, whatever the message holds: newlines and control characters are escaped."""
    return f"{prog}: error: {one_line(message)}"


# What the running command saw or did, for its textfile metrics (``figures(...)``).
_FIGURES: list = []


def figures(*families) -> None:
    """Add metric families (:class:`vmtools.prometheus.exposition.Family`) to this run's
    textfile metrics (written only with ``--textfile-dir``)."""
    _FIGURES.extend(families)


@contextlib.contextmanager
def guard(prog: str, verbose: int = 0, quiet: bool = False, debug: bool = False,
          flags: dict[str, str] | None = None,
          textfile_dir: Path | None = None) -> Iterator[None]:
    """Run a command body: vmtools errors become one stderr line and their exit code. A
    setting a message names shows as its flag: ``--name``, or what ``flags`` says
    (``{"start": "--from"}``). With ``textfile_dir``, the run's metrics are written there at
    the end, whatever the end."""
    import time
    started = time.time()
    code = EXIT_SOFTWARE
    try:
        with _guard(prog, verbose, quiet, debug, flags):
            yield
        code = 0
    except typer.Exit as exc:
        code = exc.exit_code
        raise
    finally:
        if textfile_dir is not None:
            _write_textfile(prog, textfile_dir, started, code)


def _write_textfile(prog: str, directory: Path, started: float, code: int) -> None:
    from vmtools.prometheus.textfile import write_command
    try:
        write_command(str(directory), prog, started, code, list(_FIGURES))
    except Exception as exc:  # noqa: BLE001 - the run's own outcome stands
        print(f"{prog}: warning: {one_line(exc)}", file=sys.stderr)
    finally:
        _FIGURES.clear()


@contextlib.contextmanager
def _guard(prog: str, verbose: int = 0, quiet: bool = False, debug: bool = False,
           flags: dict[str, str] | None = None) -> Iterator[None]:
    """vmtools errors become one stderr line and their exit code (typer.Exit)."""
    global _STARTED
    _STARTED = time.monotonic()
    setup_logging(prog, verbose, quiet, debug)
    try:
        yield
    except typer.Exit:
        raise
    except VmtoolsError as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        from vmtools.cli._settings import with_origin
        text = with_origin(exc.on_command_line(flags))
        print(error_line(prog, text), file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(1) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 70, no traceback
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(error_line(prog, f"internal error: {type(exc).__name__}: {exc} "
                               "(a bug: please report it, with --debug output)"), file=sys.stderr)
        raise typer.Exit(EXIT_SOFTWARE) from None


_STARTED: float | None = None


def started() -> float:
    """When the current command's body began (``time.monotonic()``): a run's time limit
    counts from there."""
    return _STARTED if _STARTED is not None else time.monotonic()


def _silence_stdout() -> None:
    # A reader that went away (vm-snapshot | head) is not an error worth a traceback; point
    # stdout at /dev/null so the interpreter's final flush does not raise again.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# --------------------------------------------------------------------------- settings

def entry_point(app: typer.Typer, prog: str):
    """The console-script function: load the settings (``vmtools.cli._settings``: flags, then
    ``VMTOOLS_<COMMAND>_<OPTION>``, then vmtools.toml), run the app, map usage errors."""
    def main() -> None:
        from vmtools.cli._settings import run
        sys.exit(run(app, prog, error_line))
    main.__name__ = f"main_{prog.replace('-', '_')}"
    return main


# --------------------------------------------------------------------------- input

def read_text(prog: str, path: str, what: str = "input",
              limit: int = MAX_FILE_BYTES) -> tuple[str, str]:
    """Read ``path`` (``-`` for stdin) as text, at most ``limit`` bytes (a document:
    :data:`~vmtools.inputs.MAX_DOCUMENT_BYTES`); returns (text, name used in messages)."""
    name = input_name(path)
    with contextlib.ExitStack() as stack:
        stream = open_input(path, prog, what)
        if path != "-":
            stack.enter_context(stream)
        data = read_limited(stream, name, what, limit)
    if path == "-" and not data.strip() and _stdin_is_pipe():
        raise DataError("empty input: the command before this one in the pipe printed nothing "
                        "(its own error is above; under `set -o pipefail` the pipeline exits "
                        "with that command's status)", name)
    return decode(data, name, what), name


def _stdin_is_pipe() -> bool:
    import stat
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def read_document(prog: str, path: str, cls: Any, what: str | None = None) -> Any:
    """Read and validate one document of class ``cls`` (Snapshot, Plan, Report)."""
    text, name = read_text(prog, path, what or cls.__name__.lower(), MAX_DOCUMENT_BYTES)
    obj = loads(text, name)
    try:
        return cls.from_dict(obj)
    except DataError as exc:
        raise DataError(exc.message, f"{name}: {exc.where}" if exc.where else name) from exc


# --------------------------------------------------------------------------- output

def write_atomic(path: Path, text: str, what: str = "output") -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: all or nothing. Every
    step is guarded: a path that is empty, a directory or holds a NUL is a usage error naming
    it (exit 2); a disk that fails the write is a local failure (exit 1); the temporary file
    never stays behind."""
    name = str(path)
    if not name.strip():
        raise UsageError(f"an empty path is no {what} file (use - for standard output)")
    if "\0" in name:
        raise UsageError(f"{what} path {name!r} holds a NUL character")
    path = Path(path)
    if path.is_dir() or name.endswith("/"):
        raise UsageError(f"{name}: is a directory; name the {what} file")
    try:
        atomic.write_atomic(path, text)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        raise UsageError(f"{name}: cannot write: {exc.strerror}") from None
    except OSError as exc:              # a full disk, an I/O error: the machine's, not a bug
        raise LocalFailure(f"{name}: cannot write: {exc.strerror or exc}") from None


def emit(text: str, output: Path | None) -> None:
    """Print a finished document (or table) to stdout, or write it to ``-o FILE``, ending
    with a newline."""
    # A table shows names and error texts that came from hosts (JSON is ASCII already).
    data = printable_ascii(text)        # the common case: encoded once, written as bytes
    end = "" if text.endswith("\n") else "\n"
    stdout = output is None or str(output) == "-"
    buffer = getattr(sys.stdout, "buffer", None) if stdout else None
    if data is None or (stdout and buffer is None):
        text = printable(text + end, newlines=True)
        if stdout:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            write_atomic(output, text)
    elif stdout:
        sys.stdout.flush()
        buffer.write(data)
        buffer.write(end.encode("ascii"))
        buffer.flush()
    else:
        write_atomic(output, data + end.encode("ascii"))


__all__ = ["OutputFormat", "make_app", "entry_point", "guard", "figures", "TextfileDir", "read_text", "read_document",
           "emit", "write_atomic", "Verbose", "Quiet", "Debug", "Version", "Format", "Output",
           "InputFile", "EXIT_DATAERR", "log"]
