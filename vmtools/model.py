"""The documents of vmtools-formats(5) as one model: snapshot, plan, report (and their envelope).

Every document is JSON that starts with ``"format"`` and ``"version"`` ("MAJOR.MINOR").
Readers ignore unknown keys and refuse an unknown major version. Validation errors are
:class:`~vmtools.errors.DataError` whose ``where`` is the JSON path of the bad value,
e.g. ``vms[3].mem_mib: expected an integer, got "4G"``.

Units live in the field names: ``cpu`` in physical CPUs (a host's capacity, a guest's
demand), ``mem_mib`` in MiB, ``net_mbps`` in Mbit/s.

Over 500 lines because it is every document's reader and writer in one place (one Reader,
one envelope check, one set of bounds); split per document, the shared validation would be
imported back by each part.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Callable, Iterable

from vmtools import __version__, jsontext, numbers
from vmtools.errors import DataError
from vmtools.inputs import MAX_FILE_BYTES, input_name, read_file
from vmtools.jsontext import dumps_indented, dumps_sorted, join_path, plain_numbers, too_deep
from vmtools.numbers import MAX_INT, MAX_NUMBER, describe
from vmtools.xen import is_dom0, is_in_flight_name

SNAPSHOT_FORMAT = "vmtools.snapshot"
PLAN_FORMAT = "vmtools.plan"
REPORT_FORMAT = "vmtools.report"
CONSTRAINTS_FORMAT = "vmtools.constraints"
SUPPORTED_MAJOR = 1
CURRENT_VERSION = "1.0"

HOST_STATES = ("online", "offline", "standby")

# Names that may reach a shell, an URL path, an XML attribute or a file name. Ganglia
# carries whatever anyone on the network sent, so everything else is refused.
_NUMBER, _BY_NAME, _HOST = (int, float), attrgetter("name"), attrgetter("host")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def is_reserved_name(name: str) -> bool:
    """True for Domain-0 and the names of guests in flight: never a host or guest of a snapshot
    (a guest published under such a name would make vm-apply think a migration is under way)."""
    return is_dom0(name) or is_in_flight_name(name)


def is_safe_name(name: object) -> bool:
    """True when ``name`` is a host or guest name vmtools will pass to other programs."""
    return isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None


def utc_now() -> str:
    """The current time as vmtools-formats(5) writes it: ``2026-11-22T01:30:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_to_iso(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_to_epoch(text: str) -> float:
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=_dt.timezone.utc).timestamp()


# --------------------------------------------------------------------------- validation

# Bounds on any number a document may carry where vmtools reads it (vmtools.numbers): integers
# exact in a float (the planner computes in floats), numbers far beyond any cluster. A
# 400-digit integer or 1e300 is an input error naming its path, never an OverflowError.
# Deeper JSON than this is no vmtools document (a plan nests 6 levels); refused before anything
# walks it recursively.
MAX_DEPTH = 64
_describe = describe


class Reader:
    """Typed access to one JSON object, raising :class:`DataError` with its JSON path."""

    def __init__(self, obj: Any, path: str = ""):
        if not isinstance(obj, dict):
            raise DataError(f"expected an object, got {_describe(obj)}", path or None)
        self.obj = obj
        self.path = path

    def where(self, key: str | int) -> str:
        return join_path(self.path, key)

    def _get(self, key: str, required: bool, default: Any) -> tuple[bool, Any]:
        if key not in self.obj or (self.obj[key] is None and not required):
            if required:
                raise DataError("missing", self.where(key))
            return False, default
        return True, self.obj[key]

    def str(self, key: str, required: bool = True, default: Any = None,
            choices: Iterable[str] | None = None) -> Any:
        found, value = self._get(key, required, default)
        if not found:
            return value
        if not isinstance(value, str):
            raise DataError(f"expected a string, got {_describe(value)}", self.where(key))
        if choices is not None and value not in choices:
            raise DataError(f"expected one of {', '.join(choices)}; got {_describe(value)}",
                            self.where(key))
        return value

    def name(self, key: str, required: bool = True, default: Any = None) -> Any:
        value = self.str(key, required, default)
        if value is not None and not is_safe_name(value):
            raise DataError(f"unsafe name {_describe(value)}: names may hold only letters, "
                            "digits, '.', '_' and '-'", self.where(key))
        return value

    def int(self, key: str, required: bool = True, default: Any = None,
            minimum: int | None = 0, maximum: int = MAX_INT) -> Any:
        found, value = self._get(key, required, default)
        if not found:
            return value
        return numbers.integer(value, self.where(key), lo=minimum, hi=maximum)

    def num(self, key: str, required: bool = True, default: Any = None,
            minimum: float | None = 0.0, maximum: float = MAX_NUMBER,
            positive: bool = False) -> Any:
        found, value = self._get(key, required, default)
        if not found:
            return value
        if positive and (minimum is None or minimum <= 0):
            return numbers.number(value, self.where(key), lo=0.0, lo_open=True, hi=maximum)
        return numbers.number(value, self.where(key), lo=minimum, hi=maximum)

    def bool(self, key: str, required: bool = True, default: Any = None) -> Any:
        found, value = self._get(key, required, default)
        if not found:
            return value
        if not isinstance(value, bool):
            raise DataError(f"expected true or false, got {_describe(value)}", self.where(key))
        return value

    def obj_(self, key: str, required: bool = True) -> "Reader | None":
        found, value = self._get(key, required, None)
        return Reader(value, self.where(key)) if found else None

    def list(self, key: str, required: bool = True) -> list[tuple[str, Any]]:
        """The list at ``key`` as (path, item) pairs."""
        found, value = self._get(key, required, [])
        if not found:
            return []
        if not isinstance(value, list):
            raise DataError(f"expected a list, got {_describe(value)}", self.where(key))
        base = self.where(key)
        return [(f"{base}[{i}]", item) for i, item in enumerate(value)]

    def records(self, key: str, cls: Any) -> list:
        """``[cls.from_dict(item, path) for path, item in self.list(key)]`` (required) without
        writing a path for each item read by ``cls.fast`` (150,000 guests' paths: 0.03 s)."""
        found, value = self._get(key, True, [])
        if not isinstance(value, list):
            raise DataError(f"expected a list, got {_describe(value)}", self.where(key))
        base, fast, read = self.where(key), cls.fast, cls.from_dict
        return [x if (x := fast(item)) is not None else read(item, f"{base}[{i}]")
                for i, item in enumerate(value)]

    def raw(self, key: str, default: Any = None) -> Any:
        return self.obj.get(key, default)


def check_envelope(obj: Any, expected_format: str, path: str = "") -> Reader:
    """Check ``format`` and ``version`` of a document and return a reader on it."""
    r = Reader(obj, path)
    fmt = r.str("format")
    if fmt != expected_format:
        raise DataError(f"expected a {expected_format} document, got {_describe(fmt)}",
                        r.where("format"))
    version = r.str("version")
    m = re.fullmatch(r"(\d+)\.(\d+)", version)
    if not m:
        raise DataError(f'expected "MAJOR.MINOR", got {_describe(version)}', r.where("version"))
    if int(m.group(1)) != SUPPORTED_MAJOR:
        raise DataError(f"version {version} of {expected_format} is not supported by this "
                        f"vmtools {__version__} (it reads {SUPPORTED_MAJOR}.x); upgrade vmtools",
                        r.where("version"))
    return r


def _unique(items: list, key: Callable[[Any], str], path: str, what: str) -> None:
    if len(set(map(key, items))) == len(items):
        return                  # the common case, at C speed; else the first duplicate named
    seen: set[str] = set()
    for i, item in enumerate(items):
        k = key(item)
        if k in seen:
            raise DataError(f"duplicate {what} {_describe(k)}", f"{path}[{i}]")
        seen.add(k)


# --------------------------------------------------------------------------- snapshot

# What the Ganglia metrics can carry (SPEC.md): container.cpu_num is a uint16,
# container.mem_total a uint32 in KB. A snapshot claiming more was not made from Ganglia.
HOST_MAX_CPU = 2**16 - 1
HOST_MIN_CPU = 0.01   # a host with no CPU would divide every objective by zero
HOST_MAX_MIB = (2**32 - 1) // 1024
HOST_MIN_MIB = 1      # a host with no memory would divide every utilisation by zero
MAX_DOMAIN_CHARS = 200   # a migration domain's name (a cluster, "xapi-pool:UUID", a label)


def domain_of(rec: dict) -> str:
    """The migration domain a host record (vm-plan's state, vm-web's) keeps: at most
    :data:`MAX_DOMAIN_CHARS` printable characters; anything else, or none, is the domain ""."""
    d = rec.get("domain")
    return d if isinstance(d, str) and d.isprintable() and len(d) <= MAX_DOMAIN_CHARS else ""


class _Record:
    """Read by ``fast`` (one test), else by ``_checked``, which names the field that is wrong."""

    @classmethod
    def from_dict(cls, obj: Any, path: str):
        return cls.fast(obj) or cls._checked(obj, path)


@dataclass
class Host(_Record):
    name: str
    cluster: str = ""
    state: str = "online"
    cpu: float = 0.0                 # physical CPUs
    mem_mib: int = 0                 # memory available to guests (Domain-0 excluded)
    net_mbps: float | None = None
    hypervisor: str = ""
    migration: str = ""
    reported: str | None = None
    # The migration domain: guests move only between hosts of one domain (a Ganglia cluster,
    # a XAPI pool, a Prometheus label). Optional: "" (and every snapshot before it) is one
    # domain.
    domain: str = ""

    @classmethod
    def fast(cls, obj: Any) -> "Host | None":
        """The common case in one test (20,000 hosts: 0.1 s less), or None: then
        :meth:`from_dict` reads it field by field and names what is wrong."""
        if type(obj) is dict:
            g = obj.get
            name, cluster, domain, state, cpu, mem, net, hyp, mig, rep = (
                g("name"), g("cluster"), g("domain"), g("state"), g("cpu"), g("mem_mib"),
                g("net_mbps"), g("hypervisor"), g("migration"), g("reported"))
            if (type(name) is str and _SAFE_NAME.fullmatch(name)
                    and (cluster is None or type(cluster) is str)
                    and (domain is None or (type(domain) is str and domain.isprintable()
                                            and len(domain) <= MAX_DOMAIN_CHARS))
                    and (state is None or (type(state) is str and state in HOST_STATES))
                    and type(cpu) in _NUMBER and HOST_MIN_CPU <= cpu <= HOST_MAX_CPU
                    and type(mem) is int and HOST_MIN_MIB <= mem <= HOST_MAX_MIB
                    and (net is None or (type(net) in _NUMBER and 0.0 < net <= MAX_NUMBER))
                    and (hyp is None or type(hyp) is str) and (mig is None or type(mig) is str)
                    and (rep is None or type(rep) is str)):
                return cls(name, "" if cluster is None else cluster,
                           "online" if state is None else state, float(cpu), mem,
                           None if net is None else float(net), "" if hyp is None else hyp,
                           "" if mig is None else mig, rep, "" if domain is None else domain)
        return None

    @classmethod
    def _checked(cls, obj: Any, path: str) -> "Host":
        r = Reader(obj, path)
        domain = r.str("domain", False, "")
        if len(domain) > MAX_DOMAIN_CHARS or not domain.isprintable():
            raise DataError(f"a migration domain is at most {MAX_DOMAIN_CHARS} printable "
                            f"characters, got {_describe(domain)}", r.where("domain"))
        return cls(name=r.name("name"), cluster=r.str("cluster", False, ""), domain=domain,
                   state=r.str("state", False, "online", HOST_STATES),
                   cpu=r.num("cpu", minimum=HOST_MIN_CPU, maximum=HOST_MAX_CPU),
                   mem_mib=r.int("mem_mib", minimum=HOST_MIN_MIB, maximum=HOST_MAX_MIB),
                   net_mbps=r.num("net_mbps", False, positive=True), hypervisor=r.str("hypervisor", False, ""),
                   migration=r.str("migration", False, ""), reported=r.str("reported", False))

    def to_dict(self) -> dict:
        d = {"name": self.name, "cluster": self.cluster}
        if self.domain:
            d["domain"] = self.domain
        d.update(state=self.state, cpu=float(self.cpu), mem_mib=self.mem_mib)
        if self.net_mbps is not None:
            d["net_mbps"] = float(self.net_mbps)
        d.update(hypervisor=self.hypervisor, migration=self.migration, reported=self.reported)
        return d


@dataclass
class VM(_Record):
    name: str
    host: str
    state: str = "running"
    vcpus: int = 1
    cpu: float = 0.0                 # demand in physical CPUs (0.85 = 85 % of one CPU)
    mem_mib: int = 0
    net_mbps: float | None = None

    @classmethod
    def fast(cls, obj: Any) -> "VM | None":
        """The common case in one test (150,000 guests: 1.5 s less), or None: then
        :meth:`from_dict` reads it field by field and names what is wrong."""
        if type(obj) is dict:
            g = obj.get
            name, host, state, vcpus, cpu, mem, net = (
                g("name"), g("host"), g("state"), g("vcpus"), g("cpu"), g("mem_mib"),
                g("net_mbps"))
            if (type(name) is str and type(host) is str and _SAFE_NAME.fullmatch(name)
                    and _SAFE_NAME.fullmatch(host) and (state is None or type(state) is str)
                    and (vcpus is None or (type(vcpus) is int and 0 <= vcpus <= HOST_MAX_CPU))
                    and type(cpu) in _NUMBER and 0.0 <= cpu <= HOST_MAX_CPU
                    and type(mem) is int and 0 <= mem <= HOST_MAX_MIB + 1
                    and (net is None or (type(net) in _NUMBER and 0.0 <= net <= MAX_NUMBER))):
                return cls(name, host, "running" if state is None else state,
                           1 if vcpus is None else vcpus, float(cpu), mem,
                           None if net is None else float(net))
        return None

    @classmethod
    def _checked(cls, obj: Any, path: str) -> "VM":
        r = Reader(obj, path)     # anything else: checked field by field, the error named
        return cls(name=r.name("name"), host=r.name("host"),
                   state=r.str("state", False, "running"),
                   vcpus=r.int("vcpus", False, 1, maximum=HOST_MAX_CPU),
                   cpu=r.num("cpu", maximum=HOST_MAX_CPU),
                   mem_mib=r.int("mem_mib", maximum=HOST_MAX_MIB + 1),   # ceil of a uint32 KB
                   net_mbps=r.num("net_mbps", False))

    def to_dict(self) -> dict:
        d = {"name": self.name, "host": self.host, "state": self.state, "vcpus": self.vcpus,
             "cpu": float(self.cpu), "mem_mib": self.mem_mib}
        if self.net_mbps is not None:
            d["net_mbps"] = float(self.net_mbps)
        return d


@dataclass
class Problem:
    kind: str
    message: str
    host: str | None = None
    vm: str | None = None
    # The migration domain the problem concerns when it names no host (a source that did not
    # answer): optional.
    domain: str | None = None

    @classmethod
    def from_dict(cls, obj: Any, path: str) -> "Problem":
        r = Reader(obj, path)
        return cls(kind=r.str("kind"), message=r.str("message"), host=r.str("host", False),
                   vm=r.str("vm", False), domain=r.str("domain", False))

    def to_dict(self) -> dict:
        d: dict = {"kind": self.kind}
        if self.domain is not None:
            d["domain"] = self.domain
        if self.host is not None:
            d["host"] = self.host
        if self.vm is not None:
            d["vm"] = self.vm
        d["message"] = self.message
        return d


STOPPED_STATES = ("suspended", "halted")


def stopped_entry(name: str, state: str, vcpus: int, mem_mib: int,
                  host: str | None = None) -> dict:
    """One entry of a snapshot's ``stopped`` list, keys in the documented order."""
    entry: dict = {"name": name, "state": state}
    if host is not None:
        entry["host"] = host
    entry.update(vcpus=vcpus, mem_mib=mem_mib)
    return entry


def _stopped(r: "Reader", running: set[str]) -> list[dict]:
    """A snapshot's optional ``stopped`` list (vmtools-formats(5)), checked."""
    out: list[dict] = []
    seen: set[str] = set()
    for p, item in r.list("stopped", False):
        g = Reader(item, p)
        name = g.name("name")
        state = g.str("state")
        if state not in STOPPED_STATES:
            raise DataError(f"expected one of {', '.join(STOPPED_STATES)}, got "
                            f"{_describe(state)}", g.where("state"))
        host = g.name("host") if g.raw("host", None) is not None else None
        if name in running or name in seen:
            raise DataError(f"guest {_describe(name)} is listed twice (a stopped guest runs "
                            "nowhere)", g.where("name"))
        seen.add(name)
        out.append(stopped_entry(name, state,
                                 g.int("vcpus", False, 1, minimum=1, maximum=HOST_MAX_CPU),
                                 g.int("mem_mib", minimum=1, maximum=HOST_MAX_MIB + 1), host))
    return out


@dataclass
class Snapshot:
    hosts: list[Host] = field(default_factory=list)
    vms: list[VM] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    source: str = ""
    created: str = field(default_factory=utc_now)
    generator: str = f"vm-snapshot {__version__}"
    version: str = CURRENT_VERSION
    # Rules the platform itself declares (vmtools.constraints rule objects, e.g. a XAPI
    # pool's anti-affinity VM groups as spread, its disabled hosts as maintenance): vm-plan
    # obeys them with those of --constraints. Optional (version 1.1).
    rules: list[dict] = field(default_factory=list)
    # Recent CPU samples of each guest, from a source that keeps history (Prometheus):
    # {guest: [[epoch seconds, CPUs], ...]}, oldest first; None when the source has none.
    samples: dict[str, list] | None = None
    # Guests the platform keeps but does not run (a XAPI pool's Suspended and Halted VMs):
    # [{"name", "state": "suspended"|"halted", "host"?, "vcpus", "mem_mib"}]. Never placed:
    # no planner reads them; vm-status lists them and vm-plan --resume may resume a
    # suspended one. Optional (version 1.2).
    stopped: list[dict] = field(default_factory=list)

    @classmethod
    def from_dict(cls, obj: Any, path: str = "") -> "Snapshot":
        r = check_envelope(obj, SNAPSHOT_FORMAT, path)
        hosts = r.records("hosts", Host)
        _unique(hosts, _BY_NAME, r.where("hosts"), "host")      # names read in C
        vms = r.records("vms", VM)
        _unique(vms, _BY_NAME, r.where("vms"), "guest")
        names = set(map(_BY_NAME, hosts))
        for i, vm in (() if names.issuperset(map(_HOST, vms)) else enumerate(vms)):
            if vm.host not in names:        # the first guest on an unknown host, named
                raise DataError(f"host {_describe(vm.host)} is not in hosts",
                                join_path(r.where("vms"), i) + ".host")
        problems = [Problem.from_dict(item, p) for p, item in r.list("problems", False)]
        # the guests' names, only for samples and stopped guests to be checked against
        listed = set(map(_BY_NAME, vms)) if r.raw("samples") is not None or r.raw("stopped") \
            else set()
        samples = _samples(r.raw("samples", None), r.where("samples"), listed)
        rules = []
        for p, item in r.list("rules", False):
            if not isinstance(item, dict):
                raise DataError(f"expected a rule object, got {_describe(item)}", p)
            rules.append(item)
        stopped = _stopped(r, listed)
        return cls(hosts=hosts, vms=vms, problems=problems, source=r.str("source", False, ""),
                   created=r.str("created", False, ""), generator=r.str("generator", False, ""),
                   version=r.str("version"), samples=samples, rules=rules, stopped=stopped)

    def to_dict(self) -> dict:
        out = {"format": SNAPSHOT_FORMAT, "version": self.version, "generator": self.generator,
               "created": self.created, "source": self.source,
               "hosts": [h.to_dict() for h in sorted(self.hosts, key=_BY_NAME)],
               "vms": [v.to_dict() for v in sorted(self.vms, key=_BY_NAME)],
               "problems": [p.to_dict() for p in self.problems]}
        if self.samples is not None:
            out["samples"] = samples_to_dict(self.samples)
        if self.rules:
            out["rules"] = list(self.rules)
        if self.stopped:
            out["stopped"] = [dict(e) for e in self.stopped]
        return out

    def guest_hosts(self) -> dict[str, str]:
        """Each running guest's name -> the name of the host it runs on (a new dict)."""
        return {v.name: v.host for v in self.vms}

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


MAX_SAMPLES_PER_GUEST = 10_000


def samples_to_dict(samples: dict[str, list]) -> dict:
    """A snapshot's ``samples`` as the document has them: ``{"cpu": {guest: [[t, cpu]]}}``."""
    return {"cpu": {name: [[t, round(c, 4)] for t, c in rows]
                    for name, rows in sorted(samples.items())}}


def _samples(obj: Any, where: str, guests: set[str]) -> dict[str, list] | None:
    """``samples.cpu``: per guest of the snapshot, [[epoch seconds, CPUs], ...] with times
    increasing and finite figures; samples of a guest not in ``vms`` are ignored."""
    if obj is None:
        return None
    cpu = obj.get("cpu") if isinstance(obj, dict) else None
    if not isinstance(cpu, dict):
        raise DataError("expected {\"cpu\": {guest: [[time, cpu], ...]}}", where)
    out: dict[str, list] = {}
    for name, rows in cpu.items():
        at = f"{where}.cpu.{name}" if is_safe_name(name) else f"{where}.cpu"
        if not isinstance(rows, list) or len(rows) > MAX_SAMPLES_PER_GUEST:
            raise DataError(f"expected at most {MAX_SAMPLES_PER_GUEST} [time, cpu] pairs", at)
        last = -math.inf
        for i, row in enumerate(rows):
            ok = (isinstance(row, list) and len(row) == 2 and
                  all(isinstance(x, (int, float)) and not isinstance(x, bool) and
                      math.isfinite(x) for x in row) and row[1] >= 0 and row[0] > last)
            if not ok:
                raise DataError("expected [time, cpu]: finite, cpu 0 or more, times "
                                "increasing", f"{at}[{i}]")
            last = row[0]
        if name in guests:
            out[name] = [[float(t), float(c)] for t, c in rows]
    return out


# --------------------------------------------------------------------------- plan

ACTION_OPS = ("migrate", "suspend", "resume", "create", "checkpoint", "boot", "shutdown",
              "power-off", "power-on")
POWER_OPS = ("power-off", "power-on")
# The guest lifecycle (vmtools-formats(5), PLAN): a suspend saves a guest's memory to an
# image and destroys it, a resume starts it again from the image, a create starts a new guest
# from its configuration file, a checkpoint saves an image and leaves the guest running.
LIFECYCLE_OPS = ("suspend", "resume", "create", "checkpoint")
MAX_PRIORITY = 9          # an action's "priority": 0 (default) to 9, higher starts first

# Image and configuration paths: absolute, normalised, made of these characters only, so that
# no path reaches a shell with a character it treats specially (they are quoted all the same)
# and none climbs out of its directory.
_SAFE_PATH = re.compile(r"(/[A-Za-z0-9_][A-Za-z0-9._+-]{0,254})+")
MAX_PATH = 1024


def is_safe_path(path: object) -> bool:
    """True for an absolute path of letters, digits and ``._+-`` between slashes, with no
    empty, ``.`` or ``..`` component (``/var/lib/xen/save/web1.save``)."""
    if not isinstance(path, str) or len(path) > MAX_PATH or not _SAFE_PATH.fullmatch(path):
        return False
    return all(part not in (".", "..") for part in path.split("/")[1:])


def path_in(path: str, directory: str) -> bool:
    """True when ``path`` (a safe path) is a file directly inside ``directory``."""
    parent, _, name = path.rpartition("/")
    return bool(name) and parent == directory.rstrip("/") and is_safe_path(path)


@dataclass
class Action:
    """One step of a plan. A migration has ``vm``, ``src``, ``dst`` and ``mem_mib``; a
    power action (``power-off``, ``power-on``) has ``host`` instead. The lifecycle ops: a
    ``suspend`` or ``checkpoint`` has ``vm``, ``src`` (where the guest runs), ``image`` and
    ``mem_mib``; a ``resume`` has ``vm``, ``dst``, ``image``, and the guest's ``mem_mib``,
    ``vcpus`` and ``cpu``; a ``create`` the same with ``config`` instead of ``image``."""

    id: int
    vm: str
    src: str
    dst: str
    mem_mib: int
    after: list[int] = field(default_factory=list)
    reason: str = ""
    op: str = "migrate"
    host: str = ""
    priority: int = 0        # higher starts first when vm-apply has a free slot (0-9)
    image: str = ""          # suspend, resume, checkpoint: the image file
    config: str = ""         # create: the guest's configuration file on its host
    vcpus: int = 0           # resume, create: the guest's virtual CPUs
    cpu: float = 0.0         # resume, create: its CPU demand (physical CPUs)

    @property
    def is_power(self) -> bool:
        return self.op in POWER_OPS

    @property
    def is_lifecycle(self) -> bool:
        return self.op in LIFECYCLE_OPS

    @property
    def starts_guest(self) -> bool:
        """A resume or a create: the guest claims its memory on ``dst`` when it starts."""
        return self.op in ("resume", "create")

    @property
    def where(self) -> str:
        """The one host a lifecycle action runs on."""
        return self.dst if self.starts_guest else self.src

    @classmethod
    def power(cls, id: int, op: str, host: str, after: list[int] | None = None,
              reason: str = "") -> "Action":
        return cls(id=id, vm="", src="", dst="", mem_mib=0, after=list(after or []),
                   reason=reason, op=op, host=host)

    @classmethod
    def from_dict(cls, obj: Any, path: str) -> "Action":
        r = Reader(obj, path)
        after = []
        for p, item in r.list("after", False):
            if isinstance(item, bool) or not isinstance(item, int):
                raise DataError(f"expected an action id, got {_describe(item)}", p)
            after.append(item)
        op = r.str("op", False, "migrate", ACTION_OPS)
        if op in POWER_OPS:
            return replace(cls.power(r.int("id", minimum=1), op, r.name("host"), after,
                                     r.str("reason", False, "")),
                           priority=r.int("priority", False, 0, maximum=MAX_PRIORITY))
        if op in LIFECYCLE_OPS:
            starts = op in ("resume", "create")
            out = cls(id=r.int("id", minimum=1), op=op, vm=r.name("vm"),
                      src="" if starts else r.name("src"), dst=r.name("dst") if starts else "",
                      mem_mib=r.int("mem_mib", maximum=HOST_MAX_MIB + 1), after=after,
                      reason=r.str("reason", False, ""),
                      priority=r.int("priority", False, 0, maximum=MAX_PRIORITY))
            key = "config" if op == "create" else "image"
            value = r.str(key)
            if not is_safe_path(value):
                raise DataError(f"unsafe path {_describe(value)}: an absolute path of letters, "
                                "digits and '._+-' between slashes, without '..'", r.where(key))
            setattr(out, key, value)
            if starts:
                out.vcpus = r.int("vcpus", minimum=1, maximum=HOST_MAX_CPU)
                out.cpu = r.num("cpu", False, 0.0, maximum=HOST_MAX_CPU)
            return out
        return cls(id=r.int("id", minimum=1), op=op,
                   vm=r.name("vm"), src=r.name("src"), dst=r.name("dst"),
                   mem_mib=r.int("mem_mib"), after=after, reason=r.str("reason", False, ""),
                   priority=r.int("priority", False, 0, maximum=MAX_PRIORITY))

    def to_dict(self) -> dict:
        if self.op in POWER_OPS:
            return {"id": self.id, "op": self.op, "host": self.host, "after": list(self.after),
                    "reason": self.reason, **({"priority": self.priority} if self.priority else {})}
        if self.op in LIFECYCLE_OPS:
            out: dict = {"id": self.id, "op": self.op, "vm": self.vm}
            if self.starts_guest:
                out["dst"] = self.dst
            else:
                out["src"] = self.src
            if self.op == "create":
                out["config"] = self.config
            else:
                out["image"] = self.image
            out["mem_mib"] = self.mem_mib
            if self.starts_guest:
                out.update(vcpus=self.vcpus, cpu=float(self.cpu))
            out.update(after=list(self.after), reason=self.reason)
            if self.priority:
                out["priority"] = self.priority
            return out
        out = {"id": self.id, "op": self.op, "vm": self.vm, "src": self.src, "dst": self.dst,
               "mem_mib": self.mem_mib, "after": list(self.after), "reason": self.reason}
        if self.priority:
            out["priority"] = self.priority
        return out


@dataclass
class Plan:
    origin: Snapshot
    placement: dict[str, str] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    objective: str = "consolidate"
    constraints: list[dict] = field(default_factory=list)
    solver: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    explain: dict[str, str] | None = None
    rules_skipped: list[dict] = field(default_factory=list)   # see constraints.prune_unknown
    origin_digest: str = ""
    created: str = field(default_factory=utc_now)
    generator: str = f"vm-plan {__version__}"
    version: str = CURRENT_VERSION

    @classmethod
    def from_dict(cls, obj: Any, path: str = "") -> "Plan":
        r = check_envelope(obj, PLAN_FORMAT, path)
        origin_raw = r.raw("origin")
        origin = Snapshot.from_dict(origin_raw, r.where("origin"))
        digest = r.str("origin_digest", False, "")
        if digest and digest != document_digest(origin_raw):
            raise DataError("does not match the origin snapshot (the plan was edited)",
                            r.where("origin_digest"))
        placement_r = r.obj_("placement")
        placement = {k: placement_r.name(k) for k in placement_r.obj}
        actions = [Action.from_dict(item, p) for p, item in r.list("actions")]
        _unique(actions, lambda a: str(a.id), r.where("actions"), "action id")
        constraints = [item for _, item in r.list("constraints", False)]
        solver = r.obj_("solver", False)
        summary = r.obj_("summary", False)
        explain = r.obj_("explain", False)
        skipped = [item for _, item in r.list("rules_skipped", False)]
        return cls(origin=origin, placement=placement, actions=actions, rules_skipped=skipped,
                   objective=r.str("objective", False, "consolidate"), constraints=constraints,
                   solver=solver.obj if solver else {}, summary=summary.obj if summary else {},
                   explain=explain.obj if explain else None, origin_digest=digest,
                   created=r.str("created", False, ""), generator=r.str("generator", False, ""),
                   version=r.str("version"))

    def to_dict(self) -> dict:
        origin = self.origin.to_dict()
        d = {"format": PLAN_FORMAT, "version": self.version, "generator": self.generator,
             "created": self.created, "origin": origin,
             "origin_digest": document_digest(origin), "objective": self.objective,
             "constraints": list(self.constraints), "solver": dict(self.solver),
             "placement": jsontext.by_key(self.placement),
             "actions": [a.to_dict() for a in self.actions], "summary": dict(self.summary)}
        if self.explain is not None:
            d["explain"] = dict(sorted(self.explain.items()))
        if self.rules_skipped:
            d["rules_skipped"] = list(self.rules_skipped)
        return d


# --------------------------------------------------------------------------- report

ACTION_OUTCOMES = ("done", "failed", "skipped", "not-run")


@dataclass
class Report:
    """What vm-apply did. ``actions`` entries carry id, vm, src, dst, outcome, started,
    ended, transport and error; ``placement`` is where each touched guest was verified."""

    plan_digest: str
    actions: list[dict] = field(default_factory=list)
    placement: dict[str, str | None] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    dry_run: bool = False
    created: str = field(default_factory=utc_now)
    generator: str = f"vm-apply {__version__}"
    version: str = CURRENT_VERSION

    @classmethod
    def from_dict(cls, obj: Any, path: str = "") -> "Report":
        r = check_envelope(obj, REPORT_FORMAT, path)
        actions = []
        for p, item in r.list("actions"):
            a = Reader(item, p)
            a.int("id", minimum=1)
            a.str("outcome", choices=ACTION_OUTCOMES)
            actions.append(item)
        placement = r.obj_("placement", False)
        summary = r.obj_("summary", False)
        return cls(plan_digest=r.str("plan_digest", False, ""), actions=actions,
                   placement=placement.obj if placement else {},
                   summary=summary.obj if summary else {},
                   dry_run=r.bool("dry_run", False, False), created=r.str("created", False, ""),
                   generator=r.str("generator", False, ""), version=r.str("version"))

    def to_dict(self) -> dict:
        return {"format": REPORT_FORMAT, "version": self.version, "generator": self.generator,
                "created": self.created, "plan_digest": self.plan_digest,
                "dry_run": self.dry_run, "actions": list(self.actions),
                "placement": dict(sorted(self.placement.items())), "summary": dict(self.summary)}


# --------------------------------------------------------------------------- suspended guests

SUSPENDED_FORMAT = "vmtools.suspended"


def parse_suspended(obj: Any, path: str = "") -> dict[str, dict]:
    """A ``vmtools.suspended`` ledger (vmtools-formats(5), SUSPENDED GUESTS) as
    ``{vm: {"name", "host", "image", "mem_mib", "vcpus", "cpu", "suspended"}}``."""
    r = check_envelope(obj, SUSPENDED_FORMAT, path)
    out: dict[str, dict] = {}
    for p, item in r.list("guests"):
        g = Reader(item, p)
        entry = {"name": g.name("name"), "host": g.name("host"), "image": g.str("image"),
                 "mem_mib": g.int("mem_mib", minimum=1, maximum=HOST_MAX_MIB + 1),
                 "vcpus": g.int("vcpus", False, 1, minimum=1, maximum=HOST_MAX_CPU),
                 "cpu": g.num("cpu", False, 0.0, maximum=HOST_MAX_CPU),
                 "suspended": g.str("suspended", False, "")}
        if not is_safe_path(entry["image"]):
            raise DataError(f"unsafe path {_describe(entry['image'])}", g.where("image"))
        if entry["name"] in out:
            raise DataError(f"duplicate guest {_describe(entry['name'])}", p)
        out[entry["name"]] = entry
    return out


def suspended_document(guests: dict[str, dict]) -> dict:
    return {"format": SUSPENDED_FORMAT, "version": CURRENT_VERSION,
            "guests": [guests[k] for k in sorted(guests)]}


# --------------------------------------------------------------------------- JSON text

def dumps(doc: Any) -> str:
    """Canonical text of a document: stable key order as built, 2-space indent, ASCII only."""
    return dumps_indented(doc) + "\n"


def document_digest(doc: Any) -> str:
    """``sha256:<hex>`` of a document, independent of key order and whitespace."""
    text = dumps_sorted(doc)          # json.dumps(sort_keys=True, compact), faster
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def loads(text: str, source: str = "<stdin>", max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; a syntax error becomes a :class:`DataError` naming line and column.

    Refused as input errors too: ``NaN``/``Infinity``, a number too large for a float
    (``1e400``) or an integer of more digits than Python reads, and nesting deeper than
    ``max_depth`` (checked without recursion, before anything walks the document)."""
    if not text.strip():
        raise DataError("empty input: expected a JSON document", source)
    huge: list[_Huge] = []

    def parse_int(digits: str) -> Any:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            huge.append(_Huge(digits))
            return huge[-1]
        return int(digits)

    try:
        if plain_numbers(text, MAX_INT_DIGITS):     # nothing the hooks refuse: C alone
            obj = json.loads(text, parse_constant=_reject_constant)
        else:
            obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                             parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", f"{source}:{exc.lineno}:{exc.colno}") from exc
    except _NumberRefused as exc:
        raise DataError(f"invalid JSON: {exc.args[0]}",
                        _where_token(text, str(exc.args[1]), source)) from None
    except RecursionError:
        raise DataError(f"JSON nested more than {max_depth} levels deep: not a vmtools "
                        "document", source) from None
    except ValueError as exc:
        # e.g. an integer of more than 4,300 digits (Python's int parsing limit)
        raise DataError(f"invalid JSON: {exc}", source) from None
    path = too_deep(obj, max_depth)
    if path is not None:
        raise DataError(f"JSON nested more than {max_depth} levels deep: not a vmtools "
                        "document", f"{source}: {path}")
    if huge:
        path = _find(obj, lambda v: isinstance(v, _Huge))
        raise DataError(f"expected a number, got an integer of {len(huge[0].lstrip('-'))} "
                        f"digits (at most {MAX_INT_DIGITS})", f"{source}: {path}")
    return obj


def load_file(path: str, what: str, parse: Callable[[Any], Any] | None = None, *,
              limit: int = MAX_FILE_BYTES, prog: str = "vmtools") -> Any:
    """The one loader of a JSON file: read bounded (:func:`vmtools.inputs.read_file`), parse
    (:func:`loads`), then ``parse(obj)`` (the reader's validation). Any decoding, size or shape
    error is a :class:`DataError` (exit 65) naming the file and the place in it."""
    text = read_file(path, what, limit=limit, prog=prog)
    name = input_name(path)
    obj = loads(text, name)
    if parse is None:
        return obj
    try:
        return parse(obj)
    except DataError as exc:
        if exc.where and exc.where.startswith(name):
            raise
        raise DataError(exc.message, f"{name}: {exc.where}" if exc.where else name,
                        settings=exc.settings) from None
    except (TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
        # A reader that trusted the shape of a hand-edited file: still the file's fault.
        raise DataError(f"not a valid {what}: {type(exc).__name__}: {exc}", name) from None


# No figure of a vmtools document needs more digits than this (2**53 has 16).
MAX_INT_DIGITS = 18


class _Huge(str):
    """An integer literal too long to be a figure; found again by :func:`_find`."""


class _NumberRefused(ValueError):
    pass


def _find(obj: Any, wanted: Callable[[Any], bool]) -> str:
    """The JSON path of the first value (in document order) for which ``wanted`` is true."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if wanted(value):
            return path or "(top)"
        if isinstance(value, dict):
            stack.extend(reversed([(v, join_path(path, str(k)[:40])) for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(v, join_path(path, i)) for i, v in enumerate(value)]))
    return "(top)"


def _reject_constant(name: str) -> Any:
    raise _NumberRefused(f"{name} is not a number JSON allows", name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else text[:21] + "..."
        raise _NumberRefused(f"the number {shown} is too large for a float (finite numbers "
                             "only)", text)
    return value


def _where_token(text: str, token: str, source: str) -> str:
    """``source:line:col`` of the first occurrence of a refused number's text."""
    offset = text.find(token)
    if offset < 0:
        return source
    line = text.count("\n", 0, offset) + 1
    return f"{source}:{line}:{offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"



