"""Asking the hosts, the only ones vm-apply believes about where a guest runs: what each
host runs (in parallel), and where one guest is after a migration, asked until the source and
the destination agree (a guest in flight carries a transient name, :mod:`vmtools.xen`)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from vmtools.drivers import Driver
from vmtools.errors import OperationFailed, Unavailable
from vmtools.xen import is_migrating


def survey(drivers: dict[str, Driver], hosts: list[str]) -> dict[str, set[str] | Exception]:
    """What each host runs, asked in parallel; an exception for a host that did not answer."""
    def ask(h: str) -> set[str] | Exception:
        try:
            return drivers[h].list_guests()
        except (Unavailable, OperationFailed) as exc:
            return exc
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
        return dict(zip(hosts, pool.map(ask, hosts)))

def where_is(drivers: dict[str, Driver], vm: str, src: str, dst: str, wait: float,
             poll: float, settled_answer: bool = False) -> tuple[str | None, str | None]:
    """Ask ``src`` and ``dst`` until they agree where ``vm`` runs, for up to ``wait``
    seconds, first after ``poll`` seconds then less and less often: (host or None, a note on
    what could not be verified). ``settled_answer``: the hypervisor said how the migration
    ended, so two hosts that both lack the guest are believed after a few polls."""
    deadline = time.monotonic() + wait
    interval = poll
    note = None
    polls = 0
    while True:
        polls += 1
        seen = survey(drivers, [src, dst])
        s, d = seen[src], seen[dst]
        s_ok, d_ok = isinstance(s, set), isinstance(d, set)
        in_flight = any(isinstance(x, set) and is_migrating(vm, x) for x in (s, d))
        on_src, on_dst = s_ok and vm in s, d_ok and vm in d
        if not in_flight:
            if s_ok and d_ok and on_src != on_dst:
                return (dst if on_dst else src), None
            # one host silent: believe the other only once it has said so a few times
            if on_src and not d_ok and polls >= 3:
                note = f"{dst} did not answer ({d}); {vm} verified on {src}"
                return src, note
            if on_dst and not s_ok and polls >= 3:
                note = f"{src} did not answer ({s}); {vm} verified on {dst}"
                return dst, note
            # the hypervisor answered and neither host runs the guest: no use waiting
            if settled_answer and s_ok and d_ok and not on_src and not on_dst \
                    and polls >= 3:
                return None, f"{vm} runs neither on {src} nor on {dst}"
        if time.monotonic() >= deadline:
            if on_src and on_dst:
                return None, f"{vm} runs on both {src} and {dst}"
            if in_flight:
                return None, f"{vm} is still migrating after {wait:g}s"
            if s_ok and d_ok:
                return None, f"{vm} runs neither on {src} nor on {dst}"
            return None, f"could not ask the hosts: {s if not s_ok else d}"
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        interval = min(interval * 2, 2.0)
