"""The ``xm-ssh`` and ``xl-ssh`` transports: the toolstack's own commands over SSH (paramiko).

``xm migrate --live <vm> <dst>`` / ``xl migrate <vm> <dst>`` run on the source host;
``xm list`` / ``xl list`` tell what a host runs. The guest lifecycle: ``save <vm> <image>``
(suspend), ``save -c`` (checkpoint), ``restore <image>`` (resume), ``create <config>``;
``test -f`` and ``rm -f --`` for the images. Every word sent is quoted
(:func:`shlex.quote`), although names are checked safe long before.

Host keys are checked against the system's ``/etc/ssh/ssh_known_hosts``, the user's
``~/.ssh/known_hosts`` and any ``--known-hosts`` files; an unknown host is refused
(paramiko ``RejectPolicy``) unless the operator opts in with ``--accept-new-host-keys``, which
accepts and records the key (in the ``--known-hosts`` file, else the user's). A key that does
not match is always refused. Authentication uses keys (``--ssh-key``, ``~/.ssh/id_*``) or the
agent, never a password. One connection per host, shared by concurrent commands (channels).
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
import time
from pathlib import Path

import paramiko

from vmtools.drivers.base import (Driver, Endpoint, HostKeyError, MigrationRefused,
                                  MigrationUncertain)
from vmtools.errors import OptionError, Unavailable, UsageError
from vmtools.xen import DOM0_NAMES

# What is kept of a remote command's output and errors (xl list of 1,000 guests is ~100 KB).
MAX_OUTPUT_BYTES = 16 * 2**20
MAX_ERROR_BYTES = 64 * 2**10

log = logging.getLogger("vmtools.ssh")

SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"


class SshOptions:
    """What every SSH connection of one run shares: user, key, known_hosts, policy."""

    def __init__(self, user: str | None = None, key: str | None = None,
                 known_hosts: list[str] | None = None, accept_new: bool = False,
                 system_known_hosts: str = SYSTEM_KNOWN_HOSTS,
                 user_known_hosts: str = USER_KNOWN_HOSTS):
        self.user = user
        self.key = key
        self.known_hosts = [str(p) for p in (known_hosts or [])]
        self.accept_new = accept_new
        self.system_known_hosts = system_known_hosts
        self.user_known_hosts = os.path.expanduser(user_known_hosts)
        self.record_lock = threading.Lock()
        if key is not None and not os.path.isfile(key):
            raise OptionError("ssh_key", f"{key}: no such file")
        for path in self.known_hosts:
            if not os.path.isfile(path) and not accept_new:
                raise OptionError("known_hosts", f"{path}: no such file")

    @property
    def record_path(self) -> str:
        """Where an accepted new host key is written."""
        return self.known_hosts[0] if self.known_hosts else self.user_known_hosts

    def load_into(self, client: paramiko.SSHClient) -> None:
        for path in [self.system_known_hosts, self.user_known_hosts, *self.known_hosts]:
            if os.path.isfile(path):
                try:
                    client.load_system_host_keys(path)
                except (OSError, paramiko.SSHException) as exc:
                    raise UsageError(f"{path}: unreadable known_hosts file: {exc}") from None
        client.set_missing_host_key_policy(
            _RecordNewHostKey(self) if self.accept_new else paramiko.RejectPolicy())


class _RecordNewHostKey(paramiko.MissingHostKeyPolicy):
    """--accept-new-host-keys: trust a host seen for the first time, and record its key."""

    def __init__(self, options: SshOptions):
        self.options = options

    def missing_host_key(self, client, hostname, key):  # noqa: D401 - paramiko's API
        client.get_host_keys().add(hostname, key.get_name(), key)
        path = Path(self.options.record_path)
        with self.options.record_lock:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(path, "a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        log.warning("accepted the new host key of %s (%s %s), recorded in %s", hostname,
                    key.get_name(), key.fingerprint if hasattr(key, "fingerprint")
                    else key.get_fingerprint().hex(), path)


class SshDriver(Driver):
    """``xm`` or ``xl`` over SSH on one host."""

    def __init__(self, endpoint: Endpoint, options: SshOptions, connect_timeout: float = 10.0):
        super().__init__(endpoint, connect_timeout)
        self.options = options
        self.tool = "xl" if endpoint.transport == "xl-ssh" else "xm"
        self.transport = endpoint.transport
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_endpoint(cls, endpoint: Endpoint, connect_timeout: float = 10.0,
                     ssh_options: SshOptions | None = None, **_settings) -> "SshDriver":
        return cls(endpoint, ssh_options or SshOptions(), connect_timeout)

    # ---- connection
    def _connect(self) -> paramiko.SSHClient:
        with self._lock:
            client = self._client
            if client is not None:
                t = client.get_transport()
                if t is not None and t.is_active():
                    return client
                client.close()
                self._client = None
            client = paramiko.SSHClient()
            self.options.load_into(client)
            ep = self.endpoint
            try:
                client.connect(ep.address, port=ep.port, username=self.options.user,
                               key_filename=self.options.key, allow_agent=True,
                               look_for_keys=self.options.key is None, passphrase=None,
                               password=None, timeout=self.connect_timeout,
                               banner_timeout=self.connect_timeout,
                               auth_timeout=self.connect_timeout)
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise HostKeyError(
                    f"{ep.name}: the SSH host key of {ep.address}:{ep.port} does not match "
                    f"known_hosts (got {exc.key.get_name()}): refusing to connect (if the "
                    "host was reinstalled, fix known_hosts by hand)") from None
            except paramiko.AuthenticationException as exc:
                client.close()
                raise Unavailable(f"{ep.name}: SSH authentication to {ep.address}:{ep.port} "
                                  f"failed: {exc} (check --ssh-user, --ssh-key or the agent)"
                                  ) from None
            except paramiko.SSHException as exc:
                client.close()
                if "known_hosts" in str(exc):
                    raise HostKeyError(
                        f"{ep.name}: unknown SSH host key for {ep.address}:{ep.port} (add it "
                        "to known_hosts, e.g. with ssh-keyscan after checking its fingerprint, "
                        "pass --known-hosts FILE, or opt in with --accept-new-host-keys)"
                    ) from None
                raise Unavailable(f"{ep.name}: SSH to {ep.address}:{ep.port} failed: {exc}"
                                  ) from None
            except (OSError, EOFError) as exc:
                client.close()
                raise Unavailable(f"{ep.name}: cannot connect to SSH at {ep.address}:{ep.port}:"
                                  f" {exc}") from None
            self._client = client
            return client

    def run(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        """Run a command on the host; returns (exit status, stdout, stderr); exit status
        -1 means the connection dropped before the command ended. Raises TimeoutError."""
        return self.run_text(" ".join(shlex.quote(a) for a in argv), timeout)

    def run_text(self, command: str, timeout: float) -> tuple[int, str, str]:
        """:meth:`run` for a command line already written as shell text (a fixed script of
        this program's own, never text from Ganglia or a plan)."""
        for attempt in (1, 2):
            client = self._connect()
            try:
                chan = client.get_transport().open_session(timeout=self.connect_timeout)
                chan.exec_command(command)
                break
            except (paramiko.SSHException, OSError, EOFError, AttributeError) as exc:
                # a connection that died since its last use: connect again, once (nothing
                # ran: the command was not accepted)
                self._drop()
                if attempt == 2:
                    raise Unavailable(f"{self.endpoint.name}: SSH session failed: "
                                      f"{exc or type(exc).__name__}") from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            while True:
                # Read all the command prints (so it is never blocked on a full channel), keep
                # at most MAX_OUTPUT_BYTES of it and MAX_ERROR_BYTES of its errors: a host
                # printing without end cannot grow vm-apply's memory.
                while chan.recv_ready():
                    chunk = chan.recv(65536)
                    if len(out) < MAX_OUTPUT_BYTES:
                        out += chunk[:MAX_OUTPUT_BYTES - len(out)]
                while chan.recv_stderr_ready():
                    chunk = chan.recv_stderr(65536)
                    if len(err) < MAX_ERROR_BYTES:
                        err += chunk[:MAX_ERROR_BYTES - len(err)]
                if chan.exit_status_ready() or chan.closed:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    # Closing the channel would end the remote command (xl aborts a migration
                    # whose SSH session closes): leave it running, drained in the background,
                    # and let the caller ask the hosts how it ends.
                    threading.Thread(target=_drain_until_done, args=(chan,),
                                     name="ssh-left-running", daemon=True).start()
                    chan = None
                    raise TimeoutError(command)
                chan.status_event.wait(min(left, 0.5))
            # drain what arrived with the exit status
            chan.settimeout(2.0)
            for reader, buf, cap in ((chan.recv, out, MAX_OUTPUT_BYTES),
                                     (chan.recv_stderr, err, MAX_ERROR_BYTES)):
                try:
                    while data := reader(65536):
                        if len(buf) < cap:
                            buf += data[:cap - len(buf)]
                except (socket.timeout, OSError):
                    pass
            status = chan.recv_exit_status() if chan.exit_status_ready() else -1
        finally:
            if chan is not None:
                chan.close()
        return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    # ---- the driver interface
    def list_guests(self) -> set[str]:
        try:
            rc, out, err = self.run([self.tool, "list"], self.connect_timeout)
        except TimeoutError:
            raise Unavailable(f"{self.endpoint.name}: {self.tool} list did not answer within "
                              f"{self.connect_timeout:g}s") from None
        if rc != 0:
            last = (err.strip().splitlines() or [f"exit status {rc}"])[-1]
            raise Unavailable(f"{self.endpoint.name}: {self.tool} list failed: {last}")
        names = set()
        for line in out.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] not in DOM0_NAMES:
                names.add(fields[0])
        return names

    def migrate(self, vm: str, dst_address: str, timeout: float) -> None:
        argv = [self.tool, "migrate"] + (["--live"] if self.tool == "xm" else []) \
            + [vm, dst_address]
        try:
            rc, out, err = self.run(argv, timeout)
        except TimeoutError:
            raise MigrationUncertain(f"{self.tool} migrate did not end within {timeout:g}s "
                                     "(the migration may still be running)") from None
        if rc == 0:
            return
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if rc == -1:
            raise MigrationUncertain(f"the SSH connection to {self.endpoint.name} dropped "
                                     f"during {self.tool} migrate")
        if any("undefined" in ln for ln in lines):
            raise MigrationUncertain(f"{self.tool} migrate: " + " ".join(lines[-2:]))
        message = next((ln for ln in lines if ln.startswith("Error:") or "failed" in ln
                        or "invalid domain" in ln), lines[0] if lines else f"exit {rc}")
        raise MigrationRefused(f"{self.tool} migrate exited {rc}: {message}")

    # ---- the guest lifecycle (optional capabilities of the Driver interface)

    def _toolstack(self, argv: list[str], timeout: float, what: str) -> None:
        try:
            rc, out, err = self.run(argv, timeout)
        except TimeoutError:
            raise MigrationUncertain(f"{self.tool} {what} did not end within {timeout:g}s "
                                     "(it may still be running)") from None
        if rc == 0:
            return
        if rc == -1:
            raise MigrationUncertain(f"the SSH connection to {self.endpoint.name} dropped "
                                     f"during {self.tool} {what}")
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        message = next((ln for ln in lines if "error" in ln.lower() or "failed" in ln.lower()
                        or "can't" in ln.lower() or "invalid" in ln), lines[-1] if lines
                       else f"exit {rc}")
        raise MigrationRefused(f"{self.tool} {what} exited {rc}: {message}")

    def suspend_guest(self, vm: str, image: str, timeout: float) -> None:
        self._toolstack([self.tool, "save", vm, image], timeout, "save")

    def checkpoint_guest(self, vm: str, image: str, timeout: float) -> None:
        self._toolstack([self.tool, "save", "-c", vm, image], timeout, "save -c")

    def resume_guest(self, vm: str, image: str, timeout: float) -> None:
        self._toolstack([self.tool, "restore", image], timeout, "restore")

    def create_guest(self, vm: str, config: str, timeout: float) -> None:
        self._toolstack([self.tool, "create", config], timeout, "create")

    def file_exists(self, path: str) -> bool:
        try:
            rc, _, err = self.run(["test", "-f", path], self.connect_timeout)
        except TimeoutError:
            raise Unavailable(f"{self.endpoint.name}: test -f did not answer within "
                              f"{self.connect_timeout:g}s") from None
        if rc in (0, 1):
            return rc == 0
        raise Unavailable(f"{self.endpoint.name}: test -f {path} failed (exit {rc}): "
                          f"{err.strip()[:200]}")

    def remove_file(self, path: str) -> None:
        try:
            rc, _, err = self.run(["rm", "-f", "--", path], self.connect_timeout)
        except TimeoutError:
            raise Unavailable(f"{self.endpoint.name}: rm did not answer within "
                              f"{self.connect_timeout:g}s") from None
        if rc != 0:
            raise MigrationRefused(f"rm -f {path} exited {rc}: {err.strip()[:200]}")

    def _drop(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def close(self) -> None:
        self._drop()


def _drain_until_done(chan) -> None:
    """Read and drop what a command left running prints, until it ends; then close."""
    try:
        while not (chan.exit_status_ready() or chan.closed):
            while chan.recv_ready():
                chan.recv(65536)
            while chan.recv_stderr_ready():
                chan.recv_stderr(65536)
            chan.status_event.wait(1.0)
    except Exception:  # noqa: BLE001 - the connection went away: nothing is left to read
        pass
    finally:
        try:
            chan.close()
        except Exception:  # noqa: BLE001
            pass


DRIVER = SshDriver
