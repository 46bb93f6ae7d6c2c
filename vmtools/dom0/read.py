"""Runners for what vm-gmetric reads on a Domain-0: ``xl``/``xm`` (``list``, ``info``),
``xenstore-read``, and the guests' vif byte counters in sysfs.

Commands run from PATH with an argument list (never a shell), in their own process group,
with a time limit: a command that hangs (a wedged xend, a stuck xenstored) is killed with its
children, and the caller gets a :class:`ToolstackError` (exit code 69) naming it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from vmtools.dom0.parse import Domain, parse_info, parse_list
from vmtools.errors import OptionError, Unavailable
from vmtools.inputs import OutputDeadline, OutputTooLarge, kill_process, read_process

log = logging.getLogger("vmtools.dom0")

TOOLSTACKS = ("xl", "xm", "auto")
_VIF = re.compile(r"vif(\d{1,5})\.\d{1,5}(?:-emu)?$")


class ToolstackError(Unavailable):
    """A toolstack command is missing, failed, hung, or printed something unexpected."""


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    line = line if len(line) <= limit else line[:limit] + "..."
    return "".join(ch if ch.isprintable() else "?" for ch in line)


def run_command(argv: list[str], timeout: float) -> str:
    """stdout of ``argv`` (exit 0 required), or a ToolstackError naming the command."""
    shown = " ".join(argv)
    path = shutil.which(argv[0])
    if path is None:
        raise ToolstackError(f"{argv[0]}: command not found on PATH ({shown})")
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.Popen([path, *argv[1:]], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
    except OSError as exc:
        raise ToolstackError(f"{shown}: cannot run: {exc.strerror}") from None
    try:
        out, err = _bounded_output(proc, timeout, shown)
    except BaseException:
        kill_process(proc)
        raise
    if proc.returncode != 0:
        raise ToolstackError(f"{shown}: exit {proc.returncode}: "
                             f"{_one_line(err.decode('utf-8', 'replace')) or 'no message'}")
    return out.decode("utf-8", "replace")


# ``xl list`` of 1,000 guests is ~100 KB, ``xl info`` ~2 KB: a toolstack printing more is broken.
MAX_OUTPUT_BYTES = 16 * 2**20
MAX_ERROR_BYTES = 64 * 2**10


def _bounded_output(proc: subprocess.Popen, timeout: float, shown: str) -> tuple[bytes, bytes]:
    try:
        return read_process(proc, timeout, MAX_OUTPUT_BYTES, MAX_ERROR_BYTES)
    except OutputDeadline:
        raise ToolstackError(f"{shown}: no answer within {timeout:g} s, killed "
                             "(is xend/xenstored wedged?)") from None
    except OutputTooLarge:
        raise ToolstackError(f"{shown}: printed more than {MAX_OUTPUT_BYTES // 2**20} MiB, "
                             "killed (a broken toolstack)") from None


class Dom0Reader:
    """Reads one Domain-0 through its toolstack (``xl``, ``xm``, or ``auto``: xl if it
    answers, else xm) and sysfs under ``sysfs_root``."""

    def __init__(self, toolstack: str = "auto", timeout: float = 10.0, sysfs_root: str = "/"):
        if toolstack not in TOOLSTACKS:
            raise OptionError("toolstack", f"{toolstack!r}: expected one of xl, xm, auto")
        self.requested = toolstack
        self.tool: str | None = None if toolstack == "auto" else toolstack
        self.timeout = timeout
        self.net_dir = Path(sysfs_root) / "sys" / "class" / "net"

    def detect(self) -> str:
        """The toolstack to use; ``auto`` tries ``xl info`` then ``xm info``."""
        if self.tool:
            return self.tool
        errors = []
        for tool in ("xl", "xm"):
            try:
                run_command([tool, "info"], self.timeout)
            except ToolstackError as exc:
                errors.append(str(exc))
                continue
            self.tool = tool
            log.info("toolstack: %s", tool)
            return tool
        raise ToolstackError("no working toolstack (tried xl and xm): " + "; ".join(errors))

    def info(self, problems: list | None = None) -> dict[str, str]:
        return parse_info(run_command([self.detect(), "info"], self.timeout),
                          problems=problems)

    def list(self, problems: list | None = None) -> list[Domain]:
        text = run_command([self.detect(), "list"], self.timeout)
        domains = parse_list(text, problems=problems)
        if not domains:
            raise ToolstackError(f"{self.tool} list: no domain at all, not even Domain-0: "
                                 f"{_one_line(text, 80)!r}")
        return domains

    def xenstore_read(self, path: str) -> str:
        return run_command(["xenstore-read", path], self.timeout).strip()

    def vif_bytes(self) -> dict[int, int]:
        """rx + tx bytes per domid, summed over the domain's vifs (``vif<domid>.<n>``)."""
        totals: dict[int, int] = {}
        try:
            entries = os.listdir(self.net_dir)
        except OSError as exc:
            log.debug("no %s: %s", self.net_dir, exc)
            return totals
        for entry in entries:
            m = _VIF.match(entry)
            if not m:
                continue
            for counter in ("rx_bytes", "tx_bytes"):
                try:
                    with open(self.net_dir / entry / "statistics" / counter, "rb") as fh:
                        text = fh.read(64).strip() or b"0"
                    if not text.isdigit() or len(text) > 20:
                        raise ValueError(f"not a byte counter: {text[:30]!r}")
                    value = int(text)
                except (OSError, ValueError) as exc:
                    log.debug("%s/%s: %s", entry, counter, exc)
                    continue
                totals[int(m[1])] = totals.get(int(m[1]), 0) + value
        return totals
