"""Live migration in the simulated cluster, and ``xm migrate`` / ``xl migrate`` as they answer.

:func:`migrate_domain` is what a Domain-0 does when asked to migrate a guest: the simulated
xend (:mod:`vmtools.lab.xend`) calls it for its HTTP and XML-RPC interfaces, and :func:`run`
wraps it for the ``xm``/``xl`` stand-ins (:mod:`vmtools.lab.standin`) with the messages and exit
codes of the real commands (reference §3.2, §3.5, §3.6).

How a migration looks from the hosts while it runs (what ``xm list``/``xl list``/xend show):
the receiving Domain-0 holds a paused ``<vm>--incoming`` domain of the same memory (so the
guest holds memory on both ends), the guest keeps running on the source. At the end, in one
state transaction, the source's domain goes away and the incoming one takes the guest's name;
on failure the incoming one is discarded and the guest stays where it was. The transfer takes
``migration_seconds(mem)`` (the state's ``migration`` rate), so time is proportional to memory.

Fault injection, through the state's ``faults`` dict (all keys optional)::

    {"refuse":   {"web1": "Not enough free memory"},  # destination refuses: fails at once
     "dst_dies": ["web2"],            # destination host goes down halfway through web2's move
     "slow":     {"web3": 4.0},       # web3's migration takes 4x longer
     "hold":     ["web5"],            # web5's transfer does not end while it is listed here
     "lose_ack": ["web4"]}            # the move succeeds but the sender reports failure

``hold`` keeps a migration in flight for as long as a test needs it there (a second run
started meanwhile, a signal sent), whatever the machine's speed; the test then takes the
guest off the list and the transfer ends at once (or at its time, if that is later).
"""

from __future__ import annotations

import select
import signal
import time

from vmtools.lab.cluster import ClusterState, go_down, migration_seconds
from vmtools.xen import DOM0, INCOMING_SUFFIX as INCOMING

POLL = 0.05

XM_MIGRATE_USAGE = """\
Usage: xm migrate <Domain> <Host>

Migrate a domain to another machine.

Options:

-h, --help           Print this help.
-l, --live           Use live migration.
-p=portnum, --port=portnum
                     Use specified port for migration.
-n=nodenum, --node=nodenum
                     Use specified NUMA node on target.
-s, --ssl            Use ssl connection for migration.
-c, --change_home_server
                     Change home server for managed domains.
"""

XL_MIGRATE_USAGE = """\
Usage: xl [-vf] migrate [options] <Domain> <host>

Migrate a domain to another host.

Options:
-h              Print this help.
-C <config>     Send <config> instead of config file from creation.
-s <sshcommand> Use <sshcommand> instead of ssh.  String will be passed
                to sh. If empty, run <host> instead of ssh <host> xl
                migrate-receive [-d -e]
-e              Do not wait in the background (on <host>) for the death
                of the domain.
--debug         Print huge (!) amount of debug during the migration process.
-p              Do not unpause domain after migrating it.
-D              Preserve the domain id
"""


class MigrationError(Exception):
    """A migration xend refused or that failed; ``code`` is the xend fault code
    (1 internal, 2 generic, 3 invalid domain), ``stage`` where it failed."""

    def __init__(self, code: int, message: str, stage: str = "start"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.stage = stage


def resolve_host(state: dict, address: str) -> str | None:
    """The simulated host a destination address names: its name, its ``ip``, or one of its
    ``addresses`` (a dedicated migration link)."""
    for name, spec in state["hosts"].items():
        if address == name or address == spec.get("ip") or address in spec.get("addresses", ()):
            return name
    return None


def find_domain(state: dict, host: str, dom: str) -> str | None:
    """The name of domain ``dom`` (a name or a domid) on ``host``, or None."""
    if dom in (DOM0, "0"):
        return DOM0
    domains = state["hosts"].get(host, {}).get("domains", {})
    if dom in domains:
        return dom
    for name, spec in domains.items():
        if str(spec.get("domid")) == dom:
            return name
    return None


def migrate_domain(state: ClusterState, src: str, dom: str, destination: str,
                   live: bool = True, aborted=lambda: False) -> None:
    """Migrate ``dom`` from simulated host ``src`` to the host ``destination`` names; blocks
    for the transfer time; raises :class:`MigrationError` with xend's fault code and text."""
    with state.transaction() as st:
        faults = st.get("faults", {})
        hosts = st["hosts"]
        if src not in hosts or not hosts[src].get("up", True):
            raise MigrationError(1, f"host {src} is down")
        name = find_domain(st, src, dom)
        if name is None:
            raise MigrationError(3, dom)
        if name == DOM0:
            raise MigrationError(2, "Cannot migrate privileged domain 0")
        guest = hosts[src]["domains"][name]
        if name.endswith(INCOMING) or guest.get("state", "").startswith("--p"):
            raise MigrationError(2, "Domain is not running")
        dst = resolve_host(st, destination)
        if dst is None or not hosts[dst].get("up", True):
            raise MigrationError(2, "can't connect: [Errno 111] Connection refused")
        if dst == src:
            raise MigrationError(2, "Cannot migrate a domain to its own host "
                                    f"(from {destination})")
        refuse = faults.get("refuse", {})
        if name in refuse:
            raise MigrationError(2, f"{refuse[name]} (from {destination})")
        if name + INCOMING in hosts[dst]["domains"] or name in hosts[dst]["domains"]:
            raise MigrationError(2, f"Domain '{name}' already exists (from {destination})")
        used = sum(d["mem_mib"] for d in hosts[dst]["domains"].values())
        free = hosts[dst]["mem_mib"] - hosts[dst].get("dom0_mib", 0) - used
        if guest["mem_mib"] > free:
            raise MigrationError(2, "Not enough free memory and enable_dom0_ballooning is "
                                    f"False, so I cannot release any more. (from {destination})")
        seconds = migration_seconds(st, guest["mem_mib"]) * float(faults.get("slow", {})
                                                                   .get(name, 1.0))
        incoming = dict(guest, state="--p---", domid=st["next_domid"])
        st["next_domid"] += 1
        hosts[dst]["domains"][name + INCOMING] = incoming
        dies = name in faults.get("dst_dies", ())
        lose_ack = name in faults.get("lose_ack", ())

    reset = MigrationError(2, f"can't connect: [Errno 104] Connection reset by peer "
                              f"(from {destination})", stage="transfer")
    deadline = time.monotonic() + seconds
    half = time.monotonic() + seconds / 2
    while True:
        now = time.monotonic()
        seen = state.read()
        if now >= deadline and name not in seen.get("faults", {}).get("hold", ()):
            break
        if aborted():
            _discard(state, dst, name + INCOMING)
            raise MigrationError(1, "migration aborted by the sender", stage="transfer")
        if dies and now >= half:
            with state.transaction() as st:
                go_down(st, dst)             # a dead host takes its guests with it
            raise reset
        failure = _broken(seen, src, dst, name, reset)
        if failure is not None:
            _discard(state, dst, name + INCOMING)
            raise failure
        time.sleep(POLL if now >= deadline else min(POLL, deadline - now))

    with state.transaction() as st:
        failure = _broken(st, src, dst, name, reset)
        if failure is not None:              # saved: the incoming domain must not linger
            st["hosts"][dst]["domains"].pop(name + INCOMING, None)
        else:
            hosts = st["hosts"]
            incoming = hosts[dst]["domains"].pop(name + INCOMING)
            guest = hosts[src]["domains"].pop(name)
            guest["domid"] = incoming["domid"]
            hosts[dst]["domains"][name] = guest
    if failure is not None:
        raise failure
    if lose_ack:
        raise MigrationError(1, "[Errno 32] Broken pipe", stage="ack")


def _broken(st: dict, src: str, dst: str, name: str,
            reset: MigrationError) -> MigrationError | None:
    """Why the transfer of ``name`` from ``src`` to ``dst`` cannot go on, or None: the receiver
    went down or lost the incoming domain, or the sender went down or lost the guest."""
    hosts = st["hosts"]
    if not hosts[dst].get("up", True) or name + INCOMING not in hosts[dst]["domains"]:
        return reset
    if not hosts[src].get("up", True) or name not in hosts[src]["domains"]:
        return MigrationError(1, "domain vanished on the source during migration",
                              stage="transfer")
    return None


def _discard(state: ClusterState, dst: str, incoming: str) -> None:
    """The receiver of a failed transfer destroys its paused ``--incoming`` domain."""
    with state.transaction() as st:
        st["hosts"][dst]["domains"].pop(incoming, None)


# --------------------------------------------------------------------------- xm / xl

def _parse_xm(args: list[str]) -> tuple[list[str], str | None]:
    """Positional arguments of ``xm migrate`` after its options, or an error text."""
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-l", "--live", "-s", "--ssl", "-c", "--change_home_server"):
            pass
        elif a in ("-p", "--port", "-n", "--node", "-r", "--resource"):
            i += 1
            if i >= len(args):
                return [], f"option {a} requires argument"
        elif a.startswith(("--port=", "--node=", "--resource=")):
            pass
        elif a.startswith("-") and a != "-":
            return [], f"option {a} not recognized"
        else:
            positional.append(a)
        i += 1
    return positional, None


def _xm(args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    if any(a in ("-h", "--help") for a in args):
        return 0, XM_MIGRATE_USAGE, ""
    positional, error = _parse_xm(args)
    if error is None and len(positional) != 2:
        error = "'xm migrate' requires 2 arguments.\n"
        return 1, "", f"Error: {error}\n{XM_MIGRATE_USAGE}"
    if error is not None:
        return 1, "", f"Error: {error}\n{XM_MIGRATE_USAGE}"
    dom, dst = positional
    try:
        migrate_domain(state, host, dom, dst, live="-l" in args or "--live" in args)
    except MigrationError as exc:
        if exc.code == 3:
            return 3, "", f"Error: Domain '{exc.message}' does not exist.\n"
        return 1, "", f"Error: {exc.message}\n{XM_MIGRATE_USAGE}"
    return 0, "", ""


def _xl(args: list[str], host: str, state: ClusterState,
        aborted=lambda: False) -> tuple[int, str, str]:
    if any(a in ("-h", "--help") for a in args):
        return 0, XL_MIGRATE_USAGE, ""
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-C", "-s"):
            i += 1
        elif a in ("-e", "-p", "-D", "-F", "--debug", "--live"):
            pass
        elif a.startswith("-"):
            return 2, "", f"migrate: invalid option -- '{a.lstrip('-')[:1]}'\n{XL_MIGRATE_USAGE}"
        else:
            positional.append(a)
        i += 1
    if len(positional) != 2:
        return 2, "", f"'xl migrate' requires at least 2 arguments\n\n{XL_MIGRATE_USAGE}"
    dom, dst = positional
    snapshot = state.read()
    name = find_domain(snapshot, host, dom)
    if name is None:
        return 1, "", f"{dom} is an invalid domain identifier (rc=-6)\n"
    if name == DOM0:
        return 1, "", "migration sender: Cannot migrate Domain-0\n"
    err = []
    try:
        err.append("migration target: Ready to receive domain.\n")
        migrate_domain(state, host, name, dst, live=True, aborted=aborted)
    except MigrationError as exc:
        if exc.stage == "start":
            if "can't connect" in exc.message:
                return 1, "", (f"ssh: connect to host {dst} port 22: Connection refused\n"
                               "xl migrate: receiver did not send banner\n"
                               "Migration failed due to problems at target.\n")
            return 1, "", "".join(err) + ("migration target: restore failed\n"
                                          "Migration failed due to problems at target.\n")
        if exc.stage == "ack":
            return 1, "", "".join(err) + (
                "migration sender: Target has acknowledged transfer.\n"
                "migration sender: Giving target permission to start.\n"
                "** Migration failed during final handshake **\n"
                "Domain state is now undefined !\n")
        return 1, "", "".join(err) + ("migration sender: Target has acknowledged transfer.\n"
                                      "Migration failed, resuming at sender.\n")
    err += ["migration sender: Target has acknowledged transfer.\n",
            "migration sender: Giving target permission to start.\n",
            "migration target: Got permission, starting domain.\n",
            "migration target: Domain started successsfully.\n",
            "migration sender: Target reports successful startup.\n",
            "Migration successful.\n"]
    return 0, "", "".join(err)


def _stderr_gone() -> bool:
    """True when nobody reads our stderr any more (the SSH session that ran us is gone)."""
    try:
        poller = select.poll()
        poller.register(2, select.POLLERR | select.POLLHUP)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def run(tool: str, args: list[str], host: str, state: ClusterState) -> tuple[int, str, str]:
    """``xm migrate ...`` or ``xl migrate ...`` on simulated host ``host``:
    returns (exit code, stdout, stderr) as the real command would."""
    if args and args[0] == "migrate-receive":
        return 1, "", "migrate-receive: only reached through xl migrate in this lab\n"
    # Like xend, the transfer does not stop when the client's terminal goes away: an SSH
    # session dropped during ``xm migrate`` leaves the migration running to its end.
    # xl runs the transfer itself: when its session goes away it stops, and the guest
    # resumes at the sender.
    if tool == "xm":
        for sig in (signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        return _xm(args[1:], host, state)
    hangup: list[int] = []
    signal.signal(signal.SIGHUP, lambda *_: hangup.append(1))
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return _xl(args[1:], host, state, aborted=lambda: bool(hangup) or _stderr_gone())
