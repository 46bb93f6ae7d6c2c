"""The hosts in maintenance, kept beside vm-plan's state: ``DIR/maintenance.json``, DIR being
vm-plan's ``--state`` directory (vmtools-formats(5), MAINTENANCE).

A ``vmtools.constraints`` document holding one ``maintenance`` rule (the hosts) and, beside
its rules, ``since`` (host -> when it went into maintenance, ISO 8601 UTC). vm-web writes it
(put a host in maintenance, end it); vm-plan ``--state DIR`` reads it on every run and obeys
it as a rule of its own, so vm-rebalance keeps the host empty and sends it nothing until the
maintenance ends. It is a file of its own, not a part of ``vmtools.state``: vm-plan rewrites
the state at every run, and a change made meanwhile would be lost; vm-plan never writes this
one. An unreadable document is a DataError naming the file (exit 65): never half-trusted.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from typing import Iterator

from vmtools import __version__
from vmtools.atomic import write_atomic
from vmtools.errors import DataError, LocalFailure, OptionError
from vmtools.inputs import MAX_DOCUMENT_BYTES, decode, read_limited
from vmtools.model import CONSTRAINTS_FORMAT, check_envelope, is_safe_name, loads
from vmtools.numbers import describe

MAINTENANCE_FILE = "maintenance.json"
_LOCK_FILE = ".maintenance.lock"


def _path(directory: str) -> str:
    return os.path.join(directory, MAINTENANCE_FILE)


def read_maintenance(directory: str | None) -> dict[str, str]:
    """host -> since (ISO text, "" when unknown), from ``DIR/maintenance.json``; {} when
    there is no directory or no document."""
    if not directory:
        return {}
    path = _path(directory)
    try:
        with open(path, "rb") as fh:
            data = read_limited(fh, path, "maintenance document", MAX_DOCUMENT_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise DataError(f"cannot read the hosts in maintenance: {exc.strerror}", path) \
            from None
    try:
        return maintenance_from_document(loads(decode(data, path, "maintenance document"),
                                               path))
    except DataError as exc:
        what = exc.message if exc.where in (path, None) else f"{exc.where}: {exc.message}"
        raise DataError(f"not a maintenance document ({what}); fix it, or remove it and no "
                        "host is in maintenance", path) from None


def maintenance_from_document(obj: object) -> dict[str, str]:
    r = check_envelope(obj, CONSTRAINTS_FORMAT)
    hosts: list[str] = []
    for where, rule in r.list("rules"):
        if not isinstance(rule, dict) or rule.get("rule") != "maintenance" or \
                set(rule) != {"rule", "hosts"} or not isinstance(rule["hosts"], list):
            raise DataError("only maintenance rules ({\"rule\": \"maintenance\", \"hosts\": "
                            "[...]}) belong here; put other rules in vm-plan's own constraints "
                            "document",
                            where)
        for i, name in enumerate(rule["hosts"]):
            if not isinstance(name, str) or not is_safe_name(name):
                raise DataError(f"{describe(name)} is not a host name", f"{where}.hosts[{i}]")
            hosts.append(name)
    since = r.raw("since", {})
    if not isinstance(since, dict) or not all(isinstance(v, str) for v in since.values()):
        raise DataError("expected {host: time}", r.where("since"))
    return {h: since.get(h, "") for h in hosts}


def maintenance_document(hosts: dict[str, str], generator: str = "vm-web") -> dict:
    names = sorted(hosts)
    return {"format": CONSTRAINTS_FORMAT, "version": "1.0",
            "generator": f"{generator} {__version__}",
            "rules": [{"rule": "maintenance", "hosts": names}] if names else [],
            "since": {h: hosts[h] for h in names}}


@contextmanager
def _locked(directory: str) -> Iterator[None]:
    try:
        fd = os.open(os.path.join(directory, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LocalFailure(f"{directory}: cannot record the hosts in maintenance: "
                           f"{exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def set_maintenance(directory: str | None, host: str, on: bool, now: float | None = None,
                    generator: str = "vm-web") -> bool:
    """Put ``host`` in maintenance (``on``) or end it, in ``DIR/maintenance.json`` (written
    atomically, one writer at a time). Returns whether anything changed."""
    if not directory:
        raise OptionError("state", "no directory is set: nowhere to keep the hosts in "
                          "maintenance")
    if not os.path.isdir(directory):
        raise OptionError("state", f"{directory}: no such directory")
    if not is_safe_name(host):
        raise DataError(f"{describe(host)} is not a host name", "host")
    with _locked(directory):
        hosts = read_maintenance(directory)
        if on == (host in hosts):
            return False
        if on:
            hosts[host] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                        time.gmtime(time.time() if now is None else now))
        else:
            del hosts[host]
        text = json.dumps(maintenance_document(hosts, generator), indent=1, sort_keys=True)
        try:
            write_atomic(_path(directory), text + "\n")
        except OSError as exc:
            raise LocalFailure(f"{directory}: cannot record the hosts in maintenance: "
                               f"{exc.strerror}") from None
    return True


def maintenance_rules(hosts: dict[str, str] | list[str], known: set[str]) -> list[dict]:
    """The maintenance rule of the hosts in maintenance that ``known`` (the snapshot's hosts)
    has: a host switched off or retired meanwhile is left out (a rule may name only hosts of
    the snapshot)."""
    names = sorted(h for h in hosts if h in known)
    return [{"rule": "maintenance", "hosts": names}] if names else []


__all__ = ["MAINTENANCE_FILE", "read_maintenance", "set_maintenance", "maintenance_rules",
           "maintenance_document", "maintenance_from_document"]
