"""The interface every migration transport implements, and the errors it raises.

A driver object talks to ONE host (its :class:`Endpoint`): it lists the domains that host
runs, answers whether it is alive, and asks it to migrate one of its guests to a
destination address. What a driver never does is decide where a guest is after a failure:
vm-apply asks both hosts (``list_guests``) and believes only them.

Errors:

- :class:`~vmtools.errors.Unavailable` -- the host could not be asked (refused, timed out,
  SSH authentication, unknown host key: :class:`HostKeyError`).
- :class:`MigrationRefused` -- the hypervisor answered that the migration failed or would not
  start (xend fault, ``(xend.err ...)``, xm/xl non-zero exit). The guest should still be on
  the source; vm-apply verifies.
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


# The guest-lifecycle operations a driver may carry out (its ``lifecycle`` capabilities).
LIFECYCLE_CAPABILITIES = ("suspend", "resume", "create", "checkpoint")


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
    """One transport to one host. Thread-safe: vm-apply calls it from several workers."""

    transport = ""

    def __init__(self, endpoint: Endpoint, connect_timeout: float = 10.0):
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout

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

    # ---- the guest lifecycle (optional): ``lifecycle`` names the operations this transport
    # carries out; vm-apply refuses a plan asking a host for one its driver lacks, before
    # anything runs. Each raises MigrationRefused (the toolstack said no), MigrationUncertain
    # (no answer: ask the host) or Unavailable, like migrate.
    lifecycle: frozenset[str] = frozenset()

    def suspend(self, vm: str, image: str, timeout: float) -> None:
        """Save ``vm``'s memory to the file ``image`` on this host and destroy the guest."""
        raise NotImplementedError

    def checkpoint(self, vm: str, image: str, timeout: float) -> None:
        """Save ``vm``'s memory to ``image`` and leave it running."""
        raise NotImplementedError

    def resume(self, image: str, timeout: float) -> None:
        """Start the guest saved in ``image`` on this host (the image is left in place)."""
        raise NotImplementedError

    def create(self, config: str, timeout: float) -> None:
        """Start a new guest from the configuration file ``config`` on this host."""
        raise NotImplementedError

    def file_exists(self, path: str) -> bool:
        """Whether this host sees a regular file at ``path`` (Unavailable if it cannot
        tell)."""
        raise NotImplementedError

    def remove_file(self, path: str) -> None:
        """Remove the file at ``path`` on this host (a resumed guest's image)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections (SSH)."""
