"""Mapping profiles: how to read hosts and guests from whatever exporter a Prometheus server
scrapes (vmtools-formats(5), PROMETHEUS PROFILES).

A profile is a TOML file: ``host_label`` and ``vm_label`` (the labels that name a host and a
guest in the queries' results), optional ``hypervisor`` and ``migration`` (used for a host no
query describes) and ``[queries]``, PromQL expressions evaluated as instant queries:

- required: ``host_memory_bytes`` (memory available to guests), ``host_cpus``,
  ``host_last_seen`` (Unix time the host last reported, over a long range: a host that stopped
  reporting is stale, and one that vanished is still named), ``guest_memory_bytes`` (its
  result is the list of guests, with their host), ``guest_vcpus``, ``guest_cpu`` (physical
  CPUs in use; also evaluated as a range query for the recent samples);
- optional: ``host_info`` (value 1, labels ``hypervisor`` and ``migration``),
  ``host_complete`` (1: the guest series are every guest the host runs; 0: its list is
  unknown), ``host_guests`` (how many guests the host runs), ``guest_net_bytes_per_second``.

Built in: ``vmtools`` (vm-gmetric's exporter) and ``xen-exporter`` (MikeDombo/xen-exporter),
in :mod:`vmtools.prometheus` ``profiles/``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vmtools.errors import OptionError

PROFILE_DIR = Path(__file__).parent / "profiles"
REQUIRED = ("host_memory_bytes", "host_cpus", "host_last_seen", "guest_memory_bytes",
            "guest_vcpus", "guest_cpu")
OPTIONAL = ("host_info", "host_complete", "host_guests", "guest_net_bytes_per_second")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_PROFILE_BYTES = 64 << 10


@dataclass
class Profile:
    name: str
    queries: dict[str, str]
    host_label: str = "host"
    vm_label: str = "vm"
    # host_info's label naming the host's migration domain (its cluster or pool); a host
    # without it is in the domain "" (one domain with every other such host)
    domain_label: str = "cluster"
    hypervisor: str = ""
    migration: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name, or a profile file; OptionError naming what is wrong."""
    path = PROFILE_DIR / f"{name_or_path}.toml"
    if not re.fullmatch(r"[a-z0-9-]+", name_or_path) or not path.is_file():
        path = Path(name_or_path)
        if not path.is_file():
            raise OptionError("prometheus-profile", f"{name_or_path}: neither a built-in "
                              f"profile ({', '.join(builtin_profiles())}) nor a profile file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PROFILE_BYTES + 1)
        if len(data) > MAX_PROFILE_BYTES:
            raise OptionError("prometheus-profile", f"{path}: larger than 64 KiB")
        doc = tomllib.loads(data.decode("utf-8"))
    except OSError as exc:
        raise OptionError("prometheus-profile", f"{path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OptionError("prometheus-profile", f"{path}: not a TOML profile ({exc})") \
            from None
    where = f"{path}"
    queries = doc.get("queries")
    if not isinstance(queries, dict):
        raise OptionError("prometheus-profile", f"{where}: no [queries] table")
    unknown = sorted(set(queries) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise OptionError("prometheus-profile", f"{where}: unknown queries {', '.join(unknown)}"
                          f" (known: {', '.join(REQUIRED + OPTIONAL)})")
    missing = [q for q in REQUIRED if not isinstance(queries.get(q), str)
               or not queries[q].strip()]
    if missing:
        raise OptionError("prometheus-profile", f"{where}: [queries] lacks {', '.join(missing)}")
    for key in OPTIONAL:
        if key in queries and not isinstance(queries[key], str):
            raise OptionError("prometheus-profile", f"{where}: {key} is not a string")
    labels = {k: doc.get(k, d) for k, d in (("host_label", "host"), ("vm_label", "vm"),
                                              ("domain_label", "cluster"))}
    for key, value in labels.items():
        if not isinstance(value, str) or not _LABEL.fullmatch(value):
            raise OptionError("prometheus-profile", f"{where}: {key} is not a label name")
    texts = {k: doc.get(k, "") for k in ("hypervisor", "migration", "description")}
    if not all(isinstance(v, str) for v in texts.values()):
        raise OptionError("prometheus-profile", f"{where}: hypervisor, migration and "
                          "description are strings")
    return Profile(name=path.stem, queries={k: v.strip() for k, v in queries.items() if
                                            v.strip()}, **labels, **texts)
