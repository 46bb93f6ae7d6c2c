"""One vm-apply at a time per migration domain, wherever the runs start from.

Two locks, both ``flock``s (released by the kernel when the process dies, however it dies):

- a lock per migration domain the plan touches (a host's ``domain``, else its cluster),
  ``<state_dir>/apply-<domain>.lock``: two runs that share a state directory never run
  together on one domain, while runs on different domains (a Ganglia cluster each, a XAPI
  pool each) go on side by side; a plan touching several domains takes each one's lock, in
  the order of their names, so two such runs cannot deadlock;
- a lock per host the plan touches, in one machine-wide directory (``/run/lock/vmtools``,
  else ``$TMPDIR/vmtools-locks``) that does not depend on ``--state-dir``: cron and an
  operator with different state directories, or a ``--resume`` from another directory, see
  each other's runs on any shared host. A host is named by its domain, its Ganglia name and
  the address vm-apply manages it at (for a XAPI pool's host, the master's URL), so two
  domains (or two simulated labs or pools on one machine) never block each other by sharing
  a host name.

A lock file exists only while a run holds it: the run removes it, still holding the lock,
when it lets go, so the directory does not fill with one file per host ever touched. A run
that opened the file just before it was removed would then hold a lock on a file nobody else
can open; so a lock counts only once the path still names the very file locked (else the run
starts again on the new file). A run killed outright leaves its files behind (the kernel frees
the flock, not the name): the next run on that host takes the file over and removes it.

Runs on other management nodes cannot see a local lock. What they cannot step over is the
hosts themselves: before each migration vm-apply asks both hosts, and a guest a host reports
in flight (``<vm>--incoming``, ``migrating-<vm>``) is never migrated again
(:meth:`vmtools.apply.run.Run.refuse_start`); the freshness check refuses a plan whose guests
are in flight before anything moves.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from pathlib import Path

from vmtools.drivers.registry import XAPI_TRANSPORT
from vmtools.errors import TemporaryFailure
from vmtools.model import epoch_to_iso, is_safe_name
from vmtools.text import printable

MACHINE_LOCK_DIR = "/run/lock/vmtools"


def machine_lock_dir() -> Path:
    """The machine-wide lock directory: /run/lock/vmtools, or under $TMPDIR when /run/lock
    cannot be written (not root)."""
    for candidate in (Path(MACHINE_LOCK_DIR), Path(tempfile.gettempdir()) / "vmtools-locks"):
        try:
            candidate.mkdir(mode=0o755, parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    return Path(tempfile.gettempdir())


class ClusterLock:
    """The lock of each migration domain in the state directory, in the order of their names,
    then one lock per touched host in the machine-wide directory (see the module).
    ``host_domain`` names each host's domain; a host it does not name counts in every one of
    ``domains`` (a single-domain run: that domain). A host managed through a XAPI
    ``pool_master`` is named by the master's URL, not by its endpoint's address."""

    def __init__(self, state_dir: Path, domains: list[str], endpoints: list = (),
                 lock_dir: str | os.PathLike | None = None,
                 host_domain: dict[str, str] | None = None,
                 pool_master: str | None = None):
        names = sorted(set(domains))
        self.names = list(names)
        self.paths = [state_dir / f"apply-{_file_part(d)}.lock" for d in names]
        hosts_dir = Path(lock_dir) if lock_dir is not None else machine_lock_dir()
        with contextlib.suppress(OSError):
            hosts_dir.mkdir(parents=True, exist_ok=True)
        every = ",".join(names)
        keys = sorted({((host_domain or {}).get(getattr(ep, "name", ""), every),
                        getattr(ep, "name", ""),
                        (pool_master if getattr(ep, "transport", "") == XAPI_TRANSPORT else None) or
                        f"{getattr(ep, 'address', '')}:{getattr(ep, 'port', '')}")
                       for ep in endpoints})
        for domain, name, where in keys:
            digest = hashlib.sha256(f"{domain}|{name}|{where}".encode()).hexdigest()[:12]
            self.paths.append(hosts_dir / f"apply-host-{_file_part(name)}-{digest}.lock")
            self.names.append(name)
        self.files: list = []

    def acquire(self) -> None:
        # always in this order (domains by name, then hosts): two runs cannot deadlock
        for path, name in zip(self.paths, self.names):
            try:
                fh = _take(path)
            except OSError as exc:
                self.release()
                raise TemporaryFailure(f"{path}: cannot open the lock: {exc.strerror}") \
                    from None
            except _Held as held:
                self.release()
                what = f"host {printable(name)}" if "apply-host-" in path.name else \
                    f"migration domain {printable(name)!r}" if name else "this cluster"
                raise TemporaryFailure(f"{path}: another vm-apply is running on {what} "
                                       f"({printable(held.holder)}); try again when it has "
                                       "finished") from None
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} since {epoch_to_iso(time.time())}\n")
                fh.flush()
            self.files.append(fh)

    def release(self) -> None:
        for fh in self.files:
            # Removed while still locked (see the module): a run that opened it meanwhile
            # finds, once it has the lock, that the path no longer names it.
            removed = False
            with contextlib.suppress(OSError):
                if _same_file(fh.name, fh):
                    os.unlink(fh.name)
                    removed = True
            with contextlib.suppress(OSError):
                if not removed:
                    fh.seek(0)
                    fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
        self.files.clear()


class _Held(Exception):
    def __init__(self, holder: str):
        self.holder = holder


# Starting again on a new file happens only when a holder let go between our open and our
# flock; more than a few times in a row means something keeps replacing the file.
_TRIES = 20


def _take(path: Path):
    """``path`` open and flocked, the path still naming the file locked; raises _Held (with
    what the holder wrote) when another process holds it, OSError when it cannot be opened."""
    for _ in range(_TRIES):
        fh = open(path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read(4096).strip() or "another process"
            fh.close()
            raise _Held(holder) from None
        except BaseException:
            fh.close()
            raise
        if _same_file(path, fh):
            return fh
        fh.close()                     # removed by the run that just let go: open it anew
    raise OSError(0, "it is replaced again and again (is something removing it?)")


def _same_file(path: str | os.PathLike, fh) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fh.fileno())
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _file_part(text: str) -> str:
    text = text or "default"
    return text if is_safe_name(text) else "c-" + hashlib.sha256(text.encode()).hexdigest()[:16]
