"""One exception tree for vmtools; each class carries its exit code (vmtools(7), EXIT STATUS).

Core modules raise these; the command-line boundary (:mod:`vmtools.cli._common`) turns
them into one ``prog: error: message`` line on stderr and the matching exit code.
"""

from __future__ import annotations

# The exit-code table of vmtools(7), in one place: every command's --help epilog is built from it.
EXIT_OK = 0
EXIT_FAILED = 1        # the operation ran and failed (no feasible placement, an action failed)
EXIT_USAGE = 2         # bad command line
EXIT_DATAERR = 65      # bad input data
EXIT_UNAVAILABLE = 69  # a service could not be reached
EXIT_SOFTWARE = 70     # internal error (a bug)
EXIT_TEMPFAIL = 75     # temporary: stale plan, lock held, solver found nothing in time

EXIT_CODES = {
    EXIT_OK: "success (an empty plan is a success: nothing to do)",
    EXIT_FAILED: "the operation ran and failed: no feasible placement; an action failed",
    EXIT_USAGE: "bad command line",
    EXIT_DATAERR: "bad input data: malformed XML or JSON, wrong document format or major "
                  "version, failed validation, a plan that fails the checker",
    EXIT_UNAVAILABLE: "a service could not be reached: gmetad, gmond, xend, SSH",
    EXIT_SOFTWARE: "internal error (a bug: please report)",
    EXIT_TEMPFAIL: "temporary: stale plan refused, lock held by another run, solver found "
                   "nothing within its time limit",
}

# The same table in the few words a --help epilog has room for.
EXIT_CODES_SHORT = {
    EXIT_OK: "success (an empty plan too)",
    EXIT_FAILED: "the operation failed",
    EXIT_USAGE: "bad command line",
    EXIT_DATAERR: "bad input data",
    EXIT_UNAVAILABLE: "a service is unreachable",
    EXIT_SOFTWARE: "internal error",
    EXIT_TEMPFAIL: "temporary failure, try again later",
}


class VmtoolsError(Exception):
    """Base of every error a user can be shown. ``str(err)`` is the one-line message.

    A core never writes a command-line flag: it names a setting in a message as ``{name}``
    and lists ``name`` in ``settings``. ``str(err)`` shows the setting's name, and
    :meth:`on_command_line` (what ``cli/_common.guard`` prints) its flag, ``--name`` with
    ``_`` as ``-`` unless ``flags`` says otherwise (``{"start": "--from"}``). Code that
    raises a new error from another's ``message`` passes ``settings=exc.settings`` along.
    """

    exit_code = EXIT_SOFTWARE

    def __init__(self, *args: object, settings: tuple[str, ...] = ()):
        super().__init__(*args)
        self.settings = tuple(settings)

    def __str__(self) -> str:
        return self._shown(lambda name: name)

    def on_command_line(self, flags: dict[str, str] | None = None) -> str:
        """The message with each setting it names shown as its flag."""
        flags = flags or {}
        return self._shown(lambda name: flags.get(name) or flag(name))

    def _shown(self, show) -> str:
        text = super().__str__()
        for name in self.settings:
            text = text.replace("{" + name + "}", show(name))
        return text


def flag(setting: str) -> str:
    """The command-line flag of a core setting: ``per_host`` -> ``--per-host``."""
    return "--" + setting.replace("_", "-")


class UsageError(VmtoolsError):
    """The command line (or a setting) is wrong."""

    exit_code = EXIT_USAGE


class OptionError(UsageError):
    """A setting of a core function is wrong. ``option`` is the setting's name (``per_host``);
    the command line shows it as its flag (``--per-host must be at least 1``). ``message``
    may name other settings as ``{name}`` (listed in ``settings``)."""

    def __init__(self, option: str, message: str, *, settings: tuple[str, ...] = ()):
        self.option = option
        self.message = message
        super().__init__(f"{{{option}}} {message}", settings=(option, *settings))


class DataError(VmtoolsError):
    """Input data is malformed or fails validation.

    ``where`` names the place (a file, ``line:col``, or a JSON path) and is printed before
    the message, so ``DataError("expected an integer", where="vms[3].mem_mib")`` reads
    ``vms[3].mem_mib: expected an integer``.
    """

    exit_code = EXIT_DATAERR

    def __init__(self, message: str, where: str | None = None, *,
                 settings: tuple[str, ...] = ()):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message, settings=settings)


class Unavailable(VmtoolsError):
    """A service (gmetad, gmond, xend, sshd) could not be reached."""

    exit_code = EXIT_UNAVAILABLE


class TemporaryFailure(VmtoolsError):
    """Try again later: stale plan, lock held, solver out of time."""

    exit_code = EXIT_TEMPFAIL


class OperationFailed(VmtoolsError):
    """The operation ran and failed (no feasible placement, a migration failed)."""

    exit_code = EXIT_FAILED


class LocalFailure(OperationFailed):
    """The machine vmtools runs on failed it: a full disk, an unwritable state or journal
    directory. Not a bug: the message names the path and what to fix."""


class InternalError(VmtoolsError):
    """A bug in vmtools."""

    exit_code = EXIT_SOFTWARE
