"""Real OpenSSH sshd daemons on 127.0.0.1, one per simulated Domain-0 (reference §4.1).

Each host gets its own sshd (own port, throwaway ed25519 host key) whose sessions find the
``xm``/``xl``/``xenstore-*`` stand-ins first on PATH (``SetEnv``), with ``VMTOOLS_LAB_HOST``
and ``VMTOOLS_LAB_STATE`` telling them which host they are and where the cluster lives. Logins
are for one key-only user (``useradd`` then ``usermod -p '*'``: with ``UsePAM no`` a locked
account is refused even for keys). Needs root and ``/usr/sbin/sshd``; :func:`available`
says why not.

The stand-ins run as that user and change the shared state file, so :meth:`SshLab.start`
opens the state's directory, file and lock to it (a lab, not a production setup).

    lab = SshLab(state_path, ["node-1", "node-2"]).start()
    lab.port["node-1"], lab.known_hosts, lab.client_key, lab.user, lab.image_dir
    lab.drop_sessions("node-1")      # kill the sshd processes serving open connections
    lab.stop()
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from vmtools.lab.ports import free_port, wait_holding
from vmtools.lab.standin import install_standins

SSHD = "/usr/sbin/sshd"
DEFAULT_USER = "vmlab"


def available() -> str | None:
    """None when the lab can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the SSH lab needs root (useradd, sshd)"
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    for tool in ("ssh-keygen", "useradd", "usermod"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        python_for_others()
    except RuntimeError as exc:
        return str(exc)
    if not _world_reachable(PACKAGE_ROOT / "vmtools" / "lab" / "standin.py"):
        return f"{PACKAGE_ROOT} is not readable by an unprivileged user"
    return None


PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def _world_reachable(path: Path) -> bool:
    path = path.resolve()
    if not os.stat(path).st_mode & 0o005:
        return False
    return all(os.stat(p).st_mode & 0o001 for p in path.parents)


def python_for_others() -> str:
    """An interpreter the lab user may run: ours, or the system's (the stand-ins need only
    the standard library and vmtools, found through PYTHONPATH)."""
    if _world_reachable(Path(sys.executable)):
        return sys.executable
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and _world_reachable(Path(candidate)):
            return candidate
    raise RuntimeError(f"no Python the lab user can run ({sys.executable} is not reachable)")


def ensure_user(user: str) -> None:
    """A key-only login: created if missing, password field ``*`` (not locked)."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True,
                       capture_output=True)
    subprocess.run(["usermod", "-p", "*", user], check=True, capture_output=True)


def keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, capture_output=True)


class SshLab:
    def __init__(self, state_path: str | os.PathLike, hosts: list[str], user: str = DEFAULT_USER,
                 directory: str | os.PathLike | None = None):
        self.state_path = Path(state_path).resolve()
        self.hosts = list(hosts)
        self.user = user
        self.dir = Path(directory) if directory else None
        self.port: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.known_hosts: Path | None = None
        self.client_key: Path | None = None
        self.image_dir = self.state_path.parent / "images"

    # ---- setup
    def _open_state_to_user(self) -> None:
        state_dir = self.state_path.parent
        tmp = Path(tempfile.gettempdir()).resolve()
        for parent in state_dir.parents:
            mode = os.stat(parent).st_mode
            if mode & 0o001:
                continue
            if parent == tmp or tmp in parent.parents:
                os.chmod(parent, mode | 0o011)      # search only, nothing listed
            else:
                raise RuntimeError(f"{parent} is not searchable by {self.user}: put the lab "
                                   "state in a world-searchable directory")
        # The stand-ins run as the lab user and change the state: the state's directory and
        # files become that user's, private (0700, 0600); root reaches them anyway.
        user = pwd.getpwnam(self.user)
        os.chown(state_dir, user.pw_uid, user.pw_gid)
        os.chmod(state_dir, 0o700)
        # Suspend images: one directory every simulated host reads and writes at the same
        # path, as a shared NFS export would be (vm-apply --image-dir).
        self.image_dir.mkdir(exist_ok=True)
        os.chown(self.image_dir, user.pw_uid, user.pw_gid)
        os.chmod(self.image_dir, 0o700)
        lock = self.state_path.with_name(self.state_path.name + ".lock")
        lock.touch()
        for path in (self.state_path, lock, Path(str(self.state_path) + ".marshal")):
            if path.exists():
                os.chown(path, user.pw_uid, user.pw_gid)
                os.chmod(path, 0o600)

    def start(self) -> "SshLab":
        why = available()
        if why:
            raise RuntimeError(why)
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="vmtools-sshlab-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        ensure_user(self.user)
        self._open_state_to_user()
        self.client_key = self.dir / "client_key"
        if not self.client_key.exists():
            keygen(self.client_key, "vmtools-lab-client")
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(str(self.client_key) + ".pub").read_text())
        os.chmod(authorized, 0o644)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        known = []
        try:
            for host in self.hosts:
                known.append(self._start_host(host, authorized))
        except BaseException:
            self.stop()
            raise
        self.known_hosts = self.dir / "known_hosts"
        self.known_hosts.write_text("".join(known))
        return self

    def _start_host(self, host: str, authorized: Path) -> str:
        assert self.dir is not None
        hdir = self.dir / host
        hdir.mkdir(exist_ok=True)
        os.chmod(hdir, 0o755)
        hostkey = hdir / "ssh_host_ed25519_key"
        if not hostkey.exists():
            keygen(hostkey, f"vmtools-lab-{host}")
        bin_dir = install_standins(hdir / "bin", self.state_path, host,
                                   python=python_for_others())
        os.chmod(bin_dir, 0o755)
        # The port was free when chosen; a parallel test's daemon may take it before sshd
        # binds it (sshd then exits at once): start again on another port.
        for attempt in range(3):
            port = free_port()
            proc = self._launch(host, hdir, port, hostkey, authorized, bin_dir)
            if wait_holding(proc, port):
                break
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if attempt == 2:
                raise RuntimeError(f"sshd for {host} did not start; see {hdir}/sshd.log")
        pub = Path(str(hostkey) + ".pub").read_text().split()
        return f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n"

    def _launch(self, host: str, hdir: Path, port: int, hostkey: Path, authorized: Path,
                bin_dir: Path) -> subprocess.Popen:
        config = hdir / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {hostkey}\n"
            f"PidFile {hdir}/sshd.pid\nAuthorizedKeysFile {authorized}\nStrictModes no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin no\nUsePAM no\n"
            f"AllowUsers {self.user}\nMaxSessions 64\nMaxStartups 64:30:128\n"
            f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin VMTOOLS_LAB_HOST={host} "
            f"VMTOOLS_LAB_STATE={self.state_path} PYTHONPATH={PACKAGE_ROOT} "
            "PYTHONDONTWRITEBYTECODE=1\nLogLevel VERBOSE\n")
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t: {check.stderr.strip()}")
        log = open(hdir / "sshd.log", "ab")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log,
                                stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[host] = proc
        self.port[host] = port
        return proc

    # ---- power: a host switched off stops its sshd; switched on, it starts on the same port
    def stop_host(self, host: str) -> None:
        proc = self.procs.pop(host, None)
        if proc is None:
            return
        children = self.session_pids_of(proc)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def start_host(self, host: str) -> None:
        assert self.dir is not None
        if host in self.procs:
            return
        hdir = self.dir / host
        log = open(hdir / "sshd.log", "ab")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(hdir / "sshd_config")],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[host] = proc

    def session_pids_of(self, proc: subprocess.Popen) -> list[int]:
        found: list[int] = []
        todo = [proc.pid]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    children = (task / "children").read_text().split()
                except OSError:
                    continue
                for c in children:
                    found.append(int(c))
                    todo.append(int(c))
        return found

    # ---- failure injection and teardown
    def session_pids(self, host: str) -> list[int]:
        """Processes below the host's sshd (its per-connection sshd and their commands)."""
        proc = self.procs.get(host)
        if proc is None:
            return []
        found: list[int] = []
        todo = [proc.pid]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    children = (task / "children").read_text().split()
                except OSError:
                    continue
                for c in children:
                    found.append(int(c))
                    todo.append(int(c))
        return found

    def drop_sessions(self, host: str) -> int:
        """Kill the sshd processes serving the host's open connections (the commands they
        ran keep running, as after a network cut). Returns how many were killed."""
        sessions = []
        for pid in self.session_pids(host):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip().startswith("sshd"):
                    sessions.append(pid)
            except OSError:
                pass
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(sessions)

    def stop(self) -> None:
        for host, proc in list(self.procs.items()):
            children = self.session_pids(host)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in children:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        self.procs.clear()

    def hostmap(self, transport_port: bool = True) -> str:
        """A host map CSV for vm-apply --hosts: every host at 127.0.0.1:<its sshd port>."""
        return "name,manage,migrate\n" + "".join(
            f"{h},127.0.0.1:{self.port[h]},{h}\n" for h in self.hosts)

    def __enter__(self) -> "SshLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
