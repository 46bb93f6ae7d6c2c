"""The interface every migration transport implements, and the errors it raises.

A driver object talks to ONE host (its :class:`Endpoint`): it lists the domains that host
runs (``list_guests``), answers whether it is alive (``ping``), and asks it to migrate one of
its guests to a destination address (``migrate``). Those three every transport has. The
host's power and its guests' lifecycle (``shutdown_host``, ``power_on_host``,
``start_guest``, ``shutdown_guest``) are optional capabilities: a transport that lacks one
raises :class:`NotSupported` naming the transport and the operation, and
:meth:`Driver.capabilities` says which it has. What a driver never does is decide where a
guest is after a failure: vm-apply asks both hosts (``list_guests``) and believes only them.

Errors:

- :class:`~vmtools.errors.Unavailable` -- the host could not be asked (refused, timed out,
  SSH authentication, unknown host key: :class:`HostKeyError`).
- :class:`MigrationRefused` -- the hypervisor answered that the migration failed or would not
  start (xend fault, ``(xend.err ...)``, xm/xl non-zero exit). The guest should still be on
  the source; vm-apply verifies.
- :class:`NotSupported` -- this transport cannot do the operation asked (exit 1, the action
  fails with that sentence; nothing was attempted).
- :class:`MigrationUncertain` -- no answer: the client timeout expired or the connection
  dropped while the (synchronous) migration ran. The migration may still be running or may
  have finished: only the hosts can tell.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from vmtools.errors import OperationFailed, Unavailable

class HostKeyError(Unavailable):
    """The SSH host key is unknown or does not match known_hosts."""


class MigrationRefused(OperationFailed):
    """The hypervisor said the migration failed (or refused to start it)."""


class MigrationUncertain(OperationFailed):
    """The migration's outcome is unknown (client timeout, connection dropped)."""


class NotSupported(OperationFailed):
    """The transport has no such operation (an optional capability it lacks)."""


OPTIONAL = ("shutdown_host", "power_on_host", "start_guest", "shutdown_guest",
            "suspend_guest", "resume_guest", "create_guest", "checkpoint_guest",
            "file_exists", "remove_file")

# The capabilities a plan's guest-lifecycle op needs of the driver of its host (a suspend
# and a resume also look at and remove image files on the host).
LIFECYCLE_NEEDS = {"suspend": ("suspend_guest",),
                   "checkpoint": ("checkpoint_guest",),
                   "resume": ("resume_guest",),
                   "create": ("create_guest", "file_exists")}
# What looking at the shared image directory takes: any host whose driver has these (the
# action's own host first) checks an image before a resume and removes it after; a create's
# configuration file is on its own host, so that host's driver needs file_exists itself.
# A transport that keeps images itself (registry's keeps_images: XAPI's suspend VDIs in the
# pool's storage) needs neither: its driver answers has_image from the guest's state.
FILE_NEEDS = ("file_exists", "remove_file")


def checkpoint_name(image: str) -> str:
    """The name of the snapshot a checkpoint to ``image`` makes on a platform that keeps
    images itself (XAPI's snapshot VM, libvirt's domain snapshot): the image's file name
    (``db1-20261207T053000Z.chk``)."""
    return image.rstrip("/").rpartition("/")[2] or image


def why(exc: BaseException) -> str:
    """An exception as a short reason, even when its text is empty."""
    return str(exc) or type(exc).__name__


def migrate_call_failed(exc: BaseException, host: str, interface: str,
                        timeout: float) -> Unavailable | MigrationUncertain:
    """What a transport error raised by a synchronous migrate call means: refused before it
    started (the host is unreachable), or lost afterwards (the outcome is unknown and the hosts
    must be asked). xend's migrate call blocks until the transfer ends; a client timeout does
    not cancel it."""
    if isinstance(exc, ConnectionRefusedError):
        return Unavailable(f"{host}: {interface} refused the connection: {why(exc)}")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return MigrationUncertain(f"no answer from xend within {timeout:g}s "
                                  "(the migration may still be running)")
    return MigrationUncertain(f"connection to xend lost during the migration: {why(exc)}")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one host: ``address:port`` for management, ``migrate`` is
    the address handed to the hypervisor when this host is a migration's destination."""

    name: str
    transport: str
    address: str
    port: int
    migrate: str

    def __str__(self) -> str:
        return f"{self.name} ({self.transport} {self.address}:{self.port})"


class Driver:
    """One transport to one host. Thread-safe: vm-apply calls it from several workers.

    A transport module defines a subclass and names it ``DRIVER``
    (:mod:`vmtools.drivers.registry` builds it through :meth:`for_endpoint`)."""

    transport = ""

    def __init__(self, endpoint: Endpoint, connect_timeout: float = 10.0):
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, connect_timeout: float = 10.0,
                     **settings) -> "Driver":
        """The driver for ``endpoint``; ``settings`` are the run's transport settings
        (``ssh_options``, ...): each transport takes what it needs and ignores the rest."""
        return cls(endpoint, connect_timeout)

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """The optional operations (:data:`OPTIONAL`) this transport implements."""
        return frozenset(op for op in OPTIONAL
                         if getattr(cls, op) is not getattr(Driver, op))

    def _not_supported(self, operation: str) -> NotSupported:
        return NotSupported(f"{self.endpoint.name}: {operation} is not supported by the "
                            f"{self.endpoint.transport or self.transport} transport")

    def ping(self) -> None:
        """Raise :class:`Unavailable` unless the host answers."""
        self.list_guests()

    def list_guests(self) -> set[str]:
        """Names of the domains the host runs now, Domain-0 excluded (transitional names
        such as ``web1--incoming`` included)."""
        raise NotImplementedError

    def migrate(self, vm: str, dst_address: str, timeout: float) -> None:
        """Migrate ``vm`` from this host to ``dst_address``; return when the hypervisor
        reports success. Raises MigrationRefused, MigrationUncertain or Unavailable."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (SSH)."""

    # ---- optional capabilities (a transport overrides the ones it has)
    def shutdown_host(self, timeout: float) -> str:
        """Shut the (emptied) host down in order; return what was done."""
        raise self._not_supported("shutting the host down")

    def power_on_host(self, timeout: float) -> str:
        """Switch the host on (through the pool or the platform, not a BMC)."""
        raise self._not_supported("switching the host on")

    def start_guest(self, vm: str, timeout: float) -> None:
        raise self._not_supported(f"starting guest {vm}")

    def shutdown_guest(self, vm: str, timeout: float) -> None:
        raise self._not_supported(f"shutting guest {vm} down")

    # The guest lifecycle (optional): each raises MigrationRefused (the toolstack said no),
    # MigrationUncertain (no answer: ask the host) or Unavailable, as migrate does.
    def suspend_guest(self, vm: str, image: str, timeout: float) -> None:
        """Save ``vm``'s memory to the file ``image`` on this host and destroy the guest."""
        raise self._not_supported(f"suspending guest {vm}")

    def checkpoint_guest(self, vm: str, image: str, timeout: float) -> None:
        """Save ``vm``'s memory to ``image`` and leave it running."""
        raise self._not_supported(f"checkpointing guest {vm}")

    def resume_guest(self, vm: str, image: str, timeout: float) -> None:
        """Start the guest ``vm``, saved in ``image``, on this host (the image is left in
        place). A platform that keeps suspended guests itself (XAPI's suspend VDI) resumes
        ``vm`` and may ignore ``image``."""
        raise self._not_supported(f"resuming guest {vm}")

    def create_guest(self, vm: str, config: str, timeout: float) -> None:
        """Start the new guest ``vm`` from the configuration file ``config`` on this host (a
        platform that defines guests itself starts the halted ``vm``)."""
        raise self._not_supported(f"creating guest {vm}")

    def file_exists(self, path: str) -> bool:
        """Whether this host sees a regular file at ``path`` (Unavailable if it cannot
        tell)."""
        raise self._not_supported("looking for a file")

    def remove_file(self, path: str) -> None:
        """Remove the file at ``path`` on this host (a resumed guest's image)."""
        raise self._not_supported("removing a file")

    def has_image(self, op: str, vm: str, path: str) -> bool:
        """Whether what lifecycle ``op`` on ``vm`` reads or wrote is there: the image
        ``path`` of a suspend, checkpoint or resume, the configuration file ``path`` of a
        create. A file on this host (:meth:`file_exists`), unless the transport keeps images
        itself (:attr:`vmtools.drivers.registry.Transport.keeps_images`: XAPI answers from
        the guest's own state)."""
        return self.file_exists(path)
