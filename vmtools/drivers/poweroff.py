"""The orderly shutdown of an emptied Domain-0, over SSH (paramiko, like the xm/xl transports).

``shutdown_host`` checks on the host itself, in the same remote command that shuts it down,
that the toolstack lists no guest besides Domain-0, then runs the Domain-0's own
``poweroff`` (or ``shutdown -h now``): init stops xend, the guests' back-ends and the disks
in order, which a BMC's power button does not. The remote command is a fixed text; nothing
from Ganglia or the plan is in it.

A host that starts shutting down may drop the SSH connection before the command's exit
status arrives: that counts as "shutdown started". Whether the host is really off is for the
caller to confirm (IPMI chassis status, or the transport no longer answering).
"""

from __future__ import annotations

from vmtools.drivers.base import Endpoint
from vmtools.drivers.ssh import SshDriver, SshOptions
from vmtools.errors import OperationFailed, Unavailable

SHUTDOWN_COMMANDS = {"poweroff": "poweroff", "shutdown": "shutdown -h now"}
GUESTS_RUNNING = 3          # the remote check's exit status when a guest runs


def remote_script(toolstack: str, command: str) -> str:
    """The one remote command: refuse (exit 3) while the toolstack lists a guest, else shut
    down. ``toolstack`` is ``xl``, ``xm`` or ``virsh`` (libvirt: plain Xen or KVM);
    ``command`` a key of SHUTDOWN_COMMANDS."""
    if toolstack not in ("xl", "xm", "virsh") or command not in SHUTDOWN_COMMANDS:
        raise ValueError("toolstack must be xl, xm or virsh, command poweroff or shutdown")
    listing = ("out=$(virsh list --name); n=$(printf '%s\\n' \"$out\" | "
               "awk 'NF && $1 != \"Domain-0\"' | wc -l); " if toolstack == "virsh" else
               "out=$(" + toolstack + " list); "
               "n=$(printf '%s\\n' \"$out\" | awk 'NR > 1 && $1 != \"Domain-0\"' | wc -l); ")
    return ("set -e; " + listing +
            "if [ \"$n\" -ne 0 ]; then echo \"$n guests still run here\" >&2; exit 3; fi; "
            "exec " + SHUTDOWN_COMMANDS[command])


def shutdown_host(name: str, address: str, port: int, options: SshOptions,
                  toolstack: str = "xl", command: str = "poweroff",
                  timeout: float = 60.0, connect_timeout: float = 10.0) -> str:
    """Shut ``name`` down over SSH at ``address:port`` if no guest runs there. Returns a
    short description of what happened; raises OperationFailed when the host refused (a
    guest runs there, the command failed) and Unavailable when SSH could not reach it."""
    driver = SshDriver(Endpoint(name, f"{toolstack}-ssh", address, port, address), options,
                       connect_timeout)
    try:
        status, _out, err = driver.run_text(remote_script(toolstack, command), timeout)
    except TimeoutError:            # no answer: whether it went down is for the caller to see
        status, err = -1, ""
    finally:
        driver.close()
    last = (err.strip().splitlines() or [""])[-1]
    if status == GUESTS_RUNNING:
        raise OperationFailed(f"{name}: not shut down: {last or 'guests still run there'}")
    if status in (0, -1):
        return f"{SHUTDOWN_COMMANDS[command]} over SSH {address}:{port}"
    raise OperationFailed(f"{name}: {SHUTDOWN_COMMANDS[command]} exited {status}"
                          + (f": {last}" if last else ""))
