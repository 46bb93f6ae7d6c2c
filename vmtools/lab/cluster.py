"""The simulated Xen cluster: one JSON state file shared by every simulated Domain-0.

The simulated xend (HTTP, XML-RPC), the xm/xl/xenstore-read stand-ins and the lab driver all
read and change the cluster through this module, under an exclusive ``flock``, so a guest is
always on exactly one host in the file, whatever process moved it.

State schema (``cluster.json``)::

    {"hosts": {"node-1": {"cpus": 8, "mem_mib": 16384, "dom0_mib": 1024, "xen": "4.17",
                          "up": true, "ip": "127.0.1.1",
                          "domains": {"web1": {"domid": 3, "mem_mib": 1024, "vcpus": 2,
                                               "cpu_time": 12.5, "load": 0.4,
                                               "net_bytes": 123456, "state": "-b----"}}}},
     "next_domid": 10,
     "migration": {"mib_per_s": 2048.0, "min_seconds": 0.05},
     "faults": {}}

``load`` is the guest's CPU demand in physical CPUs; ``cpu_time`` (seconds) and
``net_bytes`` grow with it as the simulated clock advances (see :func:`advance`). Every change
(:meth:`ClusterState.transaction`) first brings the clock to now, so a change of load applies
from then on; a reader advances its own copy without saving it, and counters only grow.
Domain-0 is not stored: its memory is ``dom0_mib`` and it is added by the stand-ins.

Beside ``cluster.json`` each save writes ``cluster.json.marshal``, the same state in Python's
marshal format, stamped with the JSON file's identity: a stand-in ``xl`` reads it without
importing json (whose regular expressions cost a stand-in call a third of its CPU time) and
falls back to the JSON whenever the stamp does not match.
"""

from __future__ import annotations

import fcntl
import marshal
import os
import sys
import time

DEFAULT_MIGRATION = {"mib_per_s": 2048.0, "min_seconds": 0.05}


class ClusterState:
    """A handle on the state file. Every read and change takes the file lock.

    Every stand-in ``xl``/``xm`` call imports this module, and a real ``xl`` starts in a few
    milliseconds, so it keeps to what the interpreter has loaded anyway: os.path rather than
    pathlib, small context-manager classes rather than contextlib, no typing."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))
        self.lock_path = self.path + ".lock"
        self.cache_path = self.path + ".marshal"

    @classmethod
    def from_env(cls) -> "ClusterState":
        path = os.environ.get("VMTOOLS_LAB_STATE")
        if not path:
            raise RuntimeError("VMTOOLS_LAB_STATE is not set: no simulated cluster")
        return cls(path)

    def _stamp(self) -> tuple:
        st = os.stat(self.path)
        return (sys.version_info[:2], st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> dict:
        try:
            with open(self.cache_path, "rb") as fh:
                stamp, state = marshal.load(fh)
            if stamp == self._stamp():
                return state
        except (OSError, EOFError, ValueError, TypeError):
            pass
        import json         # here: the stand-ins' fast path never needs it
        with open(self.path, encoding="utf-8") as fh:
            return json.load(fh)

    def _replace(self, path: str, data: bytes) -> None:
        # under the exclusive lock, so one temporary name per process is enough
        head, tail = os.path.split(path)
        tmp = os.path.join(head, f".{tail}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if os.geteuid() == 0:
            # The SSH lab gives its directory to an unprivileged user (0700, files 0600):
            # what root writes there belongs to that user too.
            owner = os.stat(head or ".")
            if owner.st_uid != 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def _save(self, state: dict) -> None:
        import json
        self._replace(self.path, json.dumps(state, sort_keys=True, indent=1).encode())
        self._replace(self.cache_path, marshal.dumps((self._stamp(), state)))

    def read(self) -> dict:
        with _Lock(self.lock_path, exclusive=False):
            return self._load()

    def transaction(self) -> "_Transaction":
        """``with state.transaction() as st:`` yields the state for changing, its clock brought
        to now (:func:`advance`); it is saved when the block ends without error."""
        return _Transaction(self)

    def write(self, state: dict) -> None:
        with _Lock(self.lock_path, exclusive=True):
            self._save(state)


class _Lock:
    def __init__(self, path: str, exclusive: bool):
        self.path, self.exclusive = path, exclusive
        self.fh = None

    def __enter__(self) -> None:
        self.fh = open(self.path, "a")
        fcntl.flock(self.fh, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


class _Transaction:
    def __init__(self, cluster: ClusterState):
        self.cluster = cluster
        self.lock = _Lock(cluster.lock_path, exclusive=True)
        self.state: dict = {}

    def __enter__(self) -> dict:
        self.lock.__enter__()
        try:
            self.state = self.cluster._load()
            advance(self.state)
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.state

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.cluster._save(self.state)
        finally:
            self.lock.__exit__(None, None, None)


def new_state(hosts: dict[str, dict], migration: dict | None = None) -> dict:
    """A state from ``{"node-1": {"cpus": 8, "mem_mib": 16384, "domains": {...}}, ...}``."""
    state: dict = {"hosts": {}, "next_domid": 1,
                             "migration": dict(migration or DEFAULT_MIGRATION), "faults": {},
                             "clock": time.time()}
    for i, (name, spec) in enumerate(sorted(hosts.items())):
        host = {"cpus": 8, "mem_mib": 16384, "dom0_mib": 1024, "xen": "4.17", "up": True,
                "ip": f"127.0.{1 + i // 250}.{1 + i % 250}", "domains": {}}
        host.update({k: v for k, v in spec.items() if k != "domains"})
        for dom, dspec in sorted(spec.get("domains", {}).items()):
            host["domains"][dom] = _new_domain(state, dspec)
        state["hosts"][name] = host
    return state


def _new_domain(state: dict, spec: dict) -> dict:
    dom = {"domid": state["next_domid"], "mem_mib": 1024, "vcpus": 1, "cpu_time": 0.0,
           "load": 0.1, "net_bytes": 0, "net_mbps": 0.0, "state": "-b----"}
    dom.update(spec)
    state["next_domid"] += 1
    return dom


def locate(state: dict, vm: str) -> list[str]:
    """Hosts on which ``vm`` runs (one, unless something went very wrong)."""
    return [h for h, spec in state["hosts"].items() if vm in spec["domains"]]


def placement(state: dict) -> dict[str, str]:
    """Guest → host for every guest of the cluster."""
    return {vm: h for h, spec in state["hosts"].items() for vm in spec["domains"]}


def differences(truth: dict[str, str], snap: dict, hosts) -> str:
    """How a snapshot differs from the simulated truth (guest → host, the hosts that should be
    seen): the hosts it misses and the guests it places wrong; empty when it shows the truth."""
    seen = {v["name"]: v["host"] for v in snap["vms"]}
    missing = sorted(set(hosts) - {h["name"] for h in snap["hosts"]})
    wrong = sorted(n for n in set(truth) | set(seen) if truth.get(n) != seen.get(n))
    parts = []
    if missing:
        parts.append("hosts not seen: " + ", ".join(missing))
    if wrong:
        parts.append("guests not where they run: " + ", ".join(
            f"{n} (seen on {seen.get(n)}, runs on {truth.get(n)})" for n in wrong[:10]))
    return "; ".join(parts)


def advance(state: dict, now: float | None = None) -> None:
    """Move the simulated clock to ``now``: CPU time and vif counters grow with each guest's
    load, so two samples taken by a Domain-0 tool give the load back."""
    now = time.time() if now is None else now
    elapsed = max(0.0, now - state.get("clock", now))
    state["clock"] = now
    for host in state["hosts"].values():
        for dom in host["domains"].values():
            dom["cpu_time"] = round(dom["cpu_time"] + dom.get("load", 0.0) * elapsed, 3)
            dom["net_bytes"] = int(dom["net_bytes"] + dom.get("net_mbps", 0.0) * 1e6 / 8 * elapsed)


def go_down(state: dict, name: str) -> None:
    """Host ``name`` goes down (a crash, a power-off): as on Xen, it loses every domain it held,
    the paused ``--incoming`` ones of migrations it was receiving included."""
    host = state["hosts"][name]
    host["up"] = False
    host["domains"].clear()


def migration_seconds(state: dict, mem_mib: int) -> float:
    """How long a live migration of ``mem_mib`` takes in this cluster."""
    m = state.get("migration", DEFAULT_MIGRATION)
    return max(m.get("min_seconds", 0.0), mem_mib / m["mib_per_s"])
