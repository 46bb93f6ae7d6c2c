"""Generators of hostile input for every reader vmtools has, driven by a ``random.Random``.

Shared by the property tests (``tests/fuzz/test_properties.py``, which feed them Hypothesis'
randoms so a failure shrinks to its seed) and the command-level harness (``bench/fuzz.py``,
which pipes what they make through the installed commands). Pure standard library: nothing here
imports vmtools, so a generator cannot share a bug with the code it tests.

Each generator starts from something valid and breaks it in the ways issue 10 found (and their
neighbours): numbers out of their metric's type, non-finite, huge or negative; timestamps in
the far future; reserved names; deep nesting; documents of the wrong shape; addresses carrying
shell syntax; toolstack lines whose name mimics the fixed fields.
"""

from __future__ import annotations

import json
import random
from typing import Any

# ----------------------------------------------------------------------------- atoms

HOSTILE_NUMBERS = ["inf", "-inf", "nan", "NaN", "Infinity", "1e308", "1e309", "1e400", "-1",
                   "-0", "0", "0.0", "4294967296", "4294967295", "65536", "1e300", "2.5",
                   "9" * 400, "9" * 4400, "1" + "0" * 30, "0x10", " 7 ", "", "four", "1e-320",
                   "-1e400", "18446744073709551616", "3.4e38"]
HOSTILE_TIMES = ["inf", "1e400", "-1", "99999999999", "4294967296", "1e20", "nan", "",
                 "9" * 500, "253402300800", "1.5", "0"]
RESERVED_NAMES = ["Domain-0", "Domain-0--incoming", "web1--incoming", "migrating-web1",
                  "web1--migratedaway"]
HOSTILE_NAMES = ["a b", "x;rm -rf /", "$(id)", "`id`", "-rf", "..", "a/b", "\u00e9t\u00e9",
                 "x" * 300, "a\tb", "&amp;", "web1 2 64 1 r----- 0.0"]
SHELL_META = set(";&|$`<>()\\\"' \t\n*?[]{}!#~=\x00")


def safe_name(rng: random.Random, prefix: str = "n") -> str:
    return f"{prefix}{rng.randrange(10**6)}" + rng.choice(["", "-a", ".b", "_c"])


def number(rng: random.Random, low: float, high: float, integer: bool = False) -> str:
    """A valid figure most of the time, a hostile one otherwise."""
    if rng.random() < 0.25:
        return rng.choice(HOSTILE_NUMBERS)
    value = rng.uniform(low, high)
    return str(int(value)) if integer else f"{value:.2f}"


# ----------------------------------------------------------------------------- Ganglia XML

def _xml_attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;"))


def _metric(name: str, value: str, type_: str = "string") -> str:
    return (f'<METRIC NAME="{_xml_attr(name)}" VAL="{_xml_attr(value)}" TYPE="{type_}" '
            'UNITS="" TN="5" TMAX="60" DMAX="0" SLOPE="both" SOURCE="gmond"/>\n')


def ganglia_xml(rng: random.Random, hosts: int = 6, now: int = 1_780_000_000) -> bytes:
    """A gmetad answer: hypervisors (some lying), their guests' metrics, guests' own gmonds."""
    body = []
    guests_all: list[str] = []
    for i in range(hosts):
        name = (rng.choice(RESERVED_NAMES + HOSTILE_NAMES) if rng.random() < 0.08
                else f"node-{i}")
        vms = []
        for j in range(rng.randrange(0, 5)):
            vms.append(rng.choice(RESERVED_NAMES + HOSTILE_NAMES) if rng.random() < 0.1
                       else f"vm{i}-{j}")
        if rng.random() < 0.1 and guests_all:
            vms.append(rng.choice(guests_all))         # listed by two hosts
        guests_all += vms
        m = [_metric("container.mem_total", number(rng, 1 << 20, 1 << 26, True), "uint32"),
             _metric("container.cpu_num", number(rng, 1, 64, True), "uint16"),
             _metric("container.vms", " ".join(vms)),
             _metric("container.driver.migration", rng.choice(["xen", "xl-ssh", "bogus"])),
             _metric("container.type", rng.choice(["xen-4.17", "xen-3.3", "x y"]))]
        if rng.random() < 0.3:
            m.append(_metric("container.net_mbps", number(rng, 100, 10000), "float"))
        if rng.random() < 0.1:
            m.append(_metric(f"container.vms.{rng.choice(['1', '2', '9' * 40])}", "extra1"))
        for vm in vms:
            for field, (low, high, integer, t) in {
                    "cpu": (0, 400, False, "float"), "mem": (1 << 18, 1 << 23, True, "uint32"),
                    "vcpus": (1, 8, True, "uint16"), "net": (0, 1e7, False, "float")}.items():
                if rng.random() < 0.9:
                    m.append(_metric(f"container.vm.{vm}.{field}",
                                     number(rng, low, high, integer), t))
        if rng.random() < 0.2:
            rng.shuffle(m)
            m = m[:rng.randrange(1, len(m))]                 # a partial container
        times = {"REPORTED": str(now - rng.randrange(0, 100)), "TN": str(rng.randrange(0, 300)),
                 "TMAX": "20"}
        if rng.random() < 0.2:
            times[rng.choice(list(times))] = rng.choice(HOSTILE_TIMES)
        attrs = " ".join(f'{k}="{_xml_attr(v)}"' for k, v in times.items())
        body.append(f'<HOST NAME="{_xml_attr(name)}" IP="10.0.0.{i}" {attrs} DMAX="0" '
                    f'LOCATION="x" GMOND_STARTED="0" TAGS="">\n{"".join(m)}</HOST>\n')
    # Some guests' own gmond entries (the fallback metrics).
    for vm in rng.sample(guests_all, min(len(guests_all), 3)):
        m = [_metric("cpu_num", number(rng, 1, 8, True), "uint16"),
             _metric("mem_total", number(rng, 1 << 18, 1 << 23), "float"),
             _metric("cpu_user", number(rng, 0, 100), "float"),
             _metric("cpu_system", number(rng, 0, 100), "float"),
             _metric("bytes_in", number(rng, 0, 1e6), "float"),
             _metric("bytes_out", number(rng, 0, 1e6), "float")]
        body.append(f'<HOST NAME="{_xml_attr(vm)}" IP="10.1.0.1" REPORTED="{now}" TN="1" '
                    f'TMAX="20" DMAX="0">\n{"".join(m)}</HOST>\n')
    grid_time = rng.choice([str(now), str(now), rng.choice(HOSTILE_TIMES)])
    text = ('<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>\n'
            + _prolog(rng)
            + '<GANGLIA_XML VERSION="3.7.2" SOURCE="gmetad">\n'
            + f'<GRID NAME="g" AUTHORITY="http://g/" LOCALTIME="{_xml_attr(grid_time)}">\n'
            + f'<CLUSTER NAME="xen" LOCALTIME="{now}" OWNER="o" LATLONG="x" URL="u">\n'
            + "".join(body) + "</CLUSTER>\n</GRID>\n</GANGLIA_XML>\n")
    data = text.encode("latin-1", "replace")
    if rng.random() < 0.1:                                   # cut anywhere
        data = data[:rng.randrange(len(data))]
    return data


def _prolog(rng: random.Random) -> str:
    """Usually nothing; sometimes an entity declaration hidden behind a comment or a PI."""
    roll = rng.random()
    if roll < 0.85:
        return ""
    hide = rng.choice(["<!-- <a -->", "<?pi <x ?>", "<!-- x -->\n<!-- <GANGLIA_XML> -->", ""])
    entity = rng.choice(['<!ENTITY x "EXPANDED">', '<!ENTITY x SYSTEM "file:///etc/passwd">',
                         '<!ENTITY % p "x">'])
    return f'{hide}<!DOCTYPE GANGLIA_XML [{entity}]>\n'


def xml_uses_entity(data: bytes) -> bool:
    return b"<!ENTITY" in data


# ----------------------------------------------------------------------------- JSON documents

def snapshot_doc(rng: random.Random, hosts: int = 5, vms: int = 12) -> dict:
    """A valid snapshot document."""
    hs = [{"name": f"node-{i}", "cluster": "xen", "state": "online",
           "cpu": float(rng.choice([4, 8, 16])), "mem_mib": rng.choice([8192, 16384, 32768]),
           "hypervisor": "xen-4.17", "migration": "xl-ssh", "reported": "2026-11-22T01:29:58Z"}
          for i in range(hosts)]
    room = {h["name"]: h["mem_mib"] * 0.7 for h in hs}
    out = []
    for j in range(vms):
        mem = rng.choice([256, 512, 1024, 2048])
        host = rng.choice([h for h in room if room[h] >= mem] or list(room))
        room[host] -= mem
        out.append({"name": f"vm{j}", "host": host, "state": "running",
                    "vcpus": rng.choice([1, 2]), "cpu": round(rng.uniform(0, 1.5), 3),
                    "mem_mib": mem})
    return {"format": "vmtools.snapshot", "version": "1.0", "generator": "fuzz",
            "created": "2026-11-22T01:30:00Z", "source": "fuzz", "hosts": hs, "vms": out,
            "problems": []}


def constraints_doc(rng: random.Random, snapshot: dict) -> dict:
    """Rules over the snapshot's names, some naming guests or hosts that are gone."""
    vms = [v["name"] for v in snapshot.get("vms", []) if isinstance(v, dict)] or ["vm0"]
    hosts = [h["name"] for h in snapshot.get("hosts", []) if isinstance(h, dict)] or ["node-0"]

    def some(names: list[str], gone: str) -> list[str]:
        picked = rng.sample(names, min(len(names), rng.randrange(1, 3)))
        if rng.random() < 0.3:
            picked.append(gone)
        return list(dict.fromkeys(picked))
    rules = []
    for _ in range(rng.randrange(0, 4)):
        kind = rng.choice(["ban", "fence", "pin", "spread", "gather", "maintenance", "max_vms",
                           "capacity"])
        r: dict[str, Any] = {"rule": kind}
        if kind in ("ban", "fence", "pin", "spread", "gather"):
            r["vms"] = some(vms, "deleted-vm")
        if kind in ("ban", "fence", "maintenance", "max_vms", "capacity"):
            r["hosts"] = some(hosts, "retired-host")
        if kind == "max_vms":
            r["count"] = rng.randrange(0, 6)
        if kind == "capacity":
            r["cpu"] = rng.choice([0.5, 0.8, 1.0])
        rules.append(r)
    return {"format": "vmtools.constraints", "version": "1.0", "rules": rules}


def state_doc(rng: random.Random) -> Any:
    """A vm-plan --state file: valid, or broken in one of the seven known ways and more."""
    good = {"observations": [{"time": 1.0e9, "hot": ["node-1"]}], "hot_since": {"node-1": 1e9},
            "moved": {"vm1": 1e9}, "placement": {"vm1": "node-1"}}
    broken = [[], "x", {"observations": "x"}, {"observations": [1, 2]},
              {"observations": [{"time": "yesterday", "hot": []}]},
              {"observations": [{"time": 1, "hot": "node-1"}]}, {"hot_since": []},
              {"hot_since": {"a": "b"}}, {"moved": {"vm1": None}}, {"placement": {"vm1": 3}},
              {"observations": [{"hot": []}]}, {"observations": [{"time": 1, "hot": [1]}]}]
    return good if rng.random() < 0.3 else rng.choice(broken)


def vmtools_state_doc(rng: random.Random) -> Any:
    """A ``DIR/vmtools.state`` document (vmtools-formats(5), STATE): valid (the plan part of
    :func:`state_doc`, the power part of :func:`power_state_doc` when that is a valid one), or
    an envelope or a part broken."""
    plan = state_doc(rng)
    power = power_state_doc(rng)
    good = {"format": "vmtools.state", "version": "1.0", "generator": "vm-plan 0.1.0",
            "plan": plan if isinstance(plan, dict) else {},
            "power": {"standby": power["standby"]} if isinstance(power["standby"], dict)
            else {}}
    broken = [[], "x", {}, dict(good, format="vmtools.plan"), dict(good, version="2.0"),
              dict(good, version=1), dict(good, plan=plan), dict(good, plan=[]),
              dict(good, power=power), dict(good, power={"standby": [1, 2]}),
              dict(good, power={"waking": {"n1": "soon"}}),
              dict(good, plan={"samples": {"vm1": [[1e9, float("nan")]]}})]
    return good if rng.random() < 0.4 else rng.choice(broken)


_INJECT = "__FUZZ_TOKEN__"
JSON_TOKENS = ["1e400", "-1e400", "9" * 400, "-" + "9" * 400, "9" * 5000, "NaN", "Infinity",
               "1e-400", "123456789012345678901234567890", "0", "-1", "[]", "{}", "null",
               "true", '"x"', '"' + "y" * 5000 + '"', "[" * 2000 + "]" * 2000,
               "[" * 100000 + "]" * 100000, '{"a":' * 70 + "1" + "}" * 70]


def _paths(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, path + (i,))
    return out


def mutate_json(rng: random.Random, doc: Any) -> str:
    """The document's text with one to three values replaced by hostile tokens (or keys
    added, removed, or the whole text cut)."""
    doc = json.loads(json.dumps(doc))
    tokens: list[str] = []
    for _ in range(rng.randrange(1, 4)):
        paths = [p for p in _paths(doc) if p]
        roll = rng.random()
        if not paths or roll < 0.1:
            doc = {"unknown": _INJECT} if rng.random() < 0.5 else doc
            tokens.append(rng.choice(JSON_TOKENS))
            continue
        path = rng.choice(paths)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if roll < 0.2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif roll < 0.3 and isinstance(parent, dict):
            parent["x-" + str(rng.randrange(100))] = _INJECT
            tokens.append(rng.choice(JSON_TOKENS))
        else:
            parent[path[-1]] = _INJECT
            tokens.append(rng.choice(JSON_TOKENS))
    text = json.dumps(doc, indent=rng.choice([None, 1]))
    for token in tokens:
        text = text.replace(f'"{_INJECT}"', token, 1)
    text = text.replace(f'"{_INJECT}"', "0")
    if rng.random() < 0.05:
        text = text[:rng.randrange(len(text) + 1)]
    return text


# ----------------------------------------------------------------------------- names, addresses

def address(rng: random.Random, hostile: float = 0.6) -> str:
    """A host-map address: valid, or (with probability ``hostile``) one that tries to smuggle
    shell syntax in."""
    # Valid ones stay on loopback (or do not resolve): the harness never reaches a real host.
    valid = [f"127.0.{rng.randrange(256)}.{rng.randrange(1, 255)}", "localhost", "::1",
             "fe80::1%lo", "::1%lo", "node1.invalid", "127.0.0.1"]
    bad = ["fe80::1%x;touch${IFS}pwned", "fe80::1%", "fe80::1%a b", "::1%$(id)",
               "a\x00b", "node;id", "-oProxyCommand=id", "$(id)", "a..b", "-a", "a-",
               "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "[::1]", "node_1", "x" * 300,
               "fe80::1%" + "e" * 80, "\u0661.1.1.1", "node\u00e9", "a\nb", "::1%eth0\n"]
    roll = rng.random()
    if roll >= hostile:
        return rng.choice(valid)
    if roll < hostile * 0.66:
        return rng.choice(bad)
    alphabet = "abc019.:%-_;$`|&()[]{} \t\\'\"\x00é"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 24)))


def hostmap_text(rng: random.Random, hosts: list[str]) -> str:
    lines = ["name,manage,migrate"]
    rate = rng.choice([0.0, 0.1, 0.6])
    for h in hosts:
        manage = address(rng, rate)
        if rng.random() < 0.3:
            manage = (f"[{manage}]" if ":" in manage else manage) + f":{rng.randrange(0, 70000)}"
        migrate = address(rng, rate)
        fields = [h, manage, migrate]
        lines.append(",".join(f'"{f}"' if rng.random() < 0.2 else f for f in fields))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- toolstack output

def xl_list(rng: random.Random) -> tuple[str, list[tuple]]:
    """``xl list`` text and the (name, domid, mem, vcpus, state, time) it really lists.
    Some names carry fake fields, so only a parser that reads from the right gets them."""
    rows = [("Domain-0", 0, 2048, 4, "r-----", 1234.5)]
    for i in range(rng.randrange(1, 6)):
        name = f"web{i}"
        if rng.random() < 0.3:
            name += f" {rng.randrange(1, 99)} {rng.randrange(64, 9999)} 1 r----- 0.0"
        rows.append((name, i + 1, rng.choice([256, 1024, 4096]), rng.randrange(1, 9),
                     rng.choice(["-b----", "r-----", "--p---"]),
                     round(rng.uniform(0, 1e5), 1)))
    lines = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"]
    for name, domid, mem, vcpus, state, cpu in rows:
        line = f"{name:<40}{domid:>6}{mem:>6}{vcpus:>6}     {state}{cpu:>10.1f}"
        if rng.random() < 0.2:
            line += " 4f3c1a2b-aaaa-bbbb-cccc-0123456789ab  -  -"
        lines.append(line)
    garbage = ["libxl: warning: odd", "web9 " + "9" * 4400 + " 1 1 r----- 0.0",
               "big 7 " + "9" * 30 + " 1 r----- 0.0", "neg 8 -1 1 r----- 0.0",
               "t 9 1 1 r----- " + "9" * 400]
    if rng.random() < 0.5:
        lines.append(rng.choice(garbage))
    return "\n".join(lines) + "\n", rows


def xl_info(rng: random.Random) -> str:
    values = {"total_memory": number(rng, 4096, 1 << 20, True),
              "nr_cpus": rng.choice(["8", "-1", "0", "65536", "nan", "9" * 4400, "1e400", "4"]),
              "xen_major": rng.choice(["4", "-4", "9" * 50]), "xen_minor": "17"}
    return "".join(f"{k:<23}: {v}\n" for k, v in values.items())


# ----------------------------------------------------------------------------- round two (issue 27)
# The readers and options added after the first round: vm-replay's CSV traces and hosts files,
# power models, vm-lab scenarios, vm-rebalance's result.json, vm-plan's power state, number
# options from flags, VMTOOLS_* variables and vmtools.toml, and text from hosts.

# What a host may answer where vmtools shows an error text: terminal controls of every kind.
HOSTILE_TEXTS = ["\x1b[2J\x1b[1;31mALL MIGRATIONS SUCCEEDED", "\x1b]0;title\x07", "ok\rFAILED",
                 "\x9b31m", "line\nvm-apply: error: forged", "\x00\x08\x7f", "\u2028\u202e",
                 "\x1bP+q\x1b\\", "plain words"]
# Values a number option or setting may be given.
HOSTILE_OPTION_NUMBERS = ["inf", "-inf", "nan", "1e10", "1e308", "-4", "0", "1e-300",
                          "4294967296", "99999999999999999999", "-0", "3", "0.5"]


def hostile_text(rng: random.Random) -> str:
    return rng.choice(HOSTILE_TEXTS) + (rng.choice(HOSTILE_TEXTS) if rng.random() < 0.3 else "")


def _rarely(rng: random.Random, low: float, high: float, integer: bool = False,
            hostile: float = 0.08) -> str:
    """A figure that is hostile only ``hostile`` of the time (a trace of hundreds of fields
    must get through whole often enough to replay)."""
    return number(rng, low, high, integer) if rng.random() < hostile * 4 else \
        (str(int(rng.uniform(low, high))) if integer else f"{rng.uniform(low, high):.2f}")


def hosts_csv(rng: random.Random, n: int = 3) -> tuple[str, list[str]]:
    """A vm-replay hosts file: name,cpu,mem_mib[,net_mbps] (some figures hostile)."""
    names = [f"h{i}" for i in range(n)]
    lines = ["name,cpu,mem_mib,net_mbps"] if rng.random() < 0.7 else []
    for name in names:
        lines.append(",".join([name if rng.random() > 0.05 else rng.choice(HOSTILE_NAMES),
                               _rarely(rng, 1, 64), _rarely(rng, 1024, 65536, integer=True),
                               _rarely(rng, 100, 10000)]))
    return "\n".join(lines) + "\n", names


def csv_trace(rng: random.Random, hosts: list[str], guests: int = 4, samples: int = 5) -> str:
    """A vm-replay CSV trace: time,guest,cpu,mem_mib,host; hostile figures, times (a
    mistyped epoch, years past 9999), carriage returns and quotes inside lines."""
    start = 1_764_547_200
    lines = ["time,guest,cpu,mem_mib,host"]
    for k in range(samples):
        for g in range(guests):
            t = str(start + 300 * k)
            if rng.random() < 0.01:
                t = rng.choice(HOSTILE_TIMES + [t[1:], "10000-01-01T00:00:00Z", t + "0"])
            row = [t, f"g{g}", _rarely(rng, 0, 2, hostile=0.01),
                   _rarely(rng, 64, 1024, integer=True, hostile=0.01),
                   rng.choice(hosts) if k == 0 else ""]
            line = ",".join(row)
            roll = rng.random()
            if roll < 0.005:
                line = line.replace(",", "\r,", 1)
            elif roll < 0.01:
                line = line.replace(",", ',"', 1)
            elif roll < 0.015:
                line += ",extra,fields"
            lines.append(line)
    return "\n".join(lines) + "\n"


def power_model_doc(rng: random.Random) -> dict:
    entry: dict[str, Any] = {"match": rng.choice(["*", "h*", "[", "node-?"])}
    if rng.random() < 0.5:
        entry["curve_w"] = [rng.choice([rng.uniform(50, 300), 1.7e308, -1, 1e7])
                            if rng.random() < 0.15 else rng.uniform(50, 300)
                            for _ in range(rng.choice([11, 11, 11, 10, 0]))]
    else:
        entry["idle_w"] = rng.choice([70.0, 0.0, -1.0, 1e9]) if rng.random() < 0.2 else 70.0
        entry["peak_w"] = rng.choice([120.0, 1e15, 50.0]) if rng.random() < 0.2 else 120.0
    if rng.random() < 0.3:
        entry["standby_w"] = rng.choice([5.0, "5", None, 1e7])
    return {"format": "vmtools.power", "version": "1.0", "hosts": [entry]}


def scenario_doc(rng: random.Random) -> Any:
    """A vm-lab scenario, valid or broken in the ways hand-written files are."""
    hosts = {f"node-{i}": {"cpus": rng.choice([4, 8, 0, -1]) if rng.random() < 0.1 else 8,
                           "mem_mib": 16384, "dom0_mib": 1024} for i in range(1, 3)}
    guests = {f"g{i}": {"host": rng.choice(list(hosts) + (["node-9"] if rng.random() < 0.1
                                                         else [])),
                        "mem_mib": 1024, "load": rng.choice([0.1, 0.5, -1, 1e300])
                        if rng.random() < 0.1 else 0.2} for i in range(3)}
    doc: Any = {"name": "fuzz", "hosts": hosts, "guests": guests,
                "load": [{"guests": ["g0"], "shape": rng.choice(["step", "pulse", "diurnal",
                                                                  "square"]),
                          "at": 1, "period": rng.choice([10, 0, -5]), "on": 2, "load": [1.0]}]}
    roll = rng.random()
    if roll < 0.1:
        doc = [doc]
    elif roll < 0.2:
        del doc["guests"]
    return doc


def result_doc(rng: random.Random) -> Any:
    """vm-rebalance's result.json, whole or damaged (wrong types, missing fields, host text)."""
    doc: dict[str, Any] = {
        "format": "vmtools.rebalance-run", "version": "1.0", "run": "20261207T050000Z",
        "started": "2026-12-07T05:00:00Z", "finished": "2026-12-07T05:00:30Z", "seconds": 30,
        "exit": 1, "failed_step": "report", "dry_run": False,
        "plan": {"objective": "consolidate", "hosts_before": 4, "hosts_after": 3,
                 "migrations": 1, "migrated_mib": 1024, "solver_status": "optimal"},
        "moves": [{"vm": "a", "from": "n1", "to": "n2", "mem_mib": 1024}],
        "outcomes": {"failed": 1},
        "failures": [{"vm": "a", "from": "n1", "to": "n2", "error": hostile_text(rng)}]}
    for _ in range(rng.randrange(0, 4)):
        key = rng.choice(list(doc))
        doc[key] = rng.choice([1, "x", None, [], {}, [1, None], 1e308, -1, True,
                               {"error": hostile_text(rng)}])
    return doc if rng.random() > 0.05 else rng.choice([[], "text", 3])


def power_state_doc(rng: random.Random) -> Any:
    """STATE/vm-plan-power.json as it may be found after a crash or a hand edit."""
    standby: Any = {rng.choice(["node-9", "\x1b[2Jnode", "a b", "n1"]):
                    {"cluster": rng.choice(["c", 3, "\x1b]0;t\x07"]),
                     "cpu": rng.choice([8, float("nan"), float("inf"), 1e308,
                                        "8", -1]),
                     "mem_mib": rng.choice([32768, "lots", None, 2**70]),
                     "since": rng.choice([1_765_000_000, "yesterday", None])}
                    for _ in range(rng.randrange(0, 3))}
    if rng.random() < 0.1:
        standby = rng.choice([[1, 2], "x", None])
    return {"version": 1, "standby": standby}


def option_case(rng: random.Random, options: list[str]) -> tuple[str, str, str]:
    """(option, value, how): a number option given a hostile value through a flag, a
    ``VMTOOLS_*`` variable or vmtools.toml."""
    return (rng.choice(options), rng.choice(HOSTILE_OPTION_NUMBERS),
            rng.choice(["flag", "env", "toml"]))
