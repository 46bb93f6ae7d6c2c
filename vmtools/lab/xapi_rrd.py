"""The simulated pool master's RRDs (:mod:`vmtools.lab.xapi`): a sample of every host and
running guest each second, served as ``/rrd_updates`` (rrdtool's ``xport`` XML, newest row
first) on each host's own address."""

from __future__ import annotations

import time

from vmtools.lab.xapi_records import MIB, uuid_of
from vmtools.xen import INCOMING_SUFFIX


class PoolRRD:
    """The RRD part of :class:`vmtools.lab.xapi.Pool`."""

    # ---- RRDs
    def sample(self) -> None:
        """One RRD sample of every host and running guest (the lab calls it every second)."""
        st = self.state.read()
        now = time.time()
        row: dict = {"t": now, "hosts": {}, "vms": {}}
        for name, host in st["hosts"].items():
            if not self.live(host):
                continue
            loads = {d: spec.get("load", 0.0) for d, spec in host["domains"].items()
                     if not d.endswith(INCOMING_SUFFIX)}
            cpus = int(host["cpus"])
            used = host.get("dom0_mib", 0) + sum(d["mem_mib"] for d in host["domains"].values())
            net = sum(spec.get("net_mbps", 0.0) for spec in host["domains"].values())
            row["hosts"][name] = {"cpu": min(1.0, sum(loads.values()) / cpus), "cpus": cpus,
                                  "mem_total_kib": host["mem_mib"] * 1024,
                                  "mem_free_kib": max(0, host["mem_mib"] - used) * 1024,
                                  "net_bytes": net * 1e6 / 8}
            for d, load in loads.items():
                spec = host["domains"][d]
                vcpus = max(1, int(spec.get("vcpus", 1)))
                row["vms"][d] = {"host": name, "vcpus": vcpus,
                                 "cpu": min(1.0, load / vcpus), "mem": spec["mem_mib"] * MIB,
                                 "net_bytes": spec.get("net_mbps", 0.0) * 1e6 / 8}
        with self.lock:
            self.samples.append(row)
            del self.samples[:-3600]

    def rrd_updates(self, host: str, query: dict) -> str:
        st = self.state.read()
        start = float(query.get("start", ["0"])[0])
        interval = max(1, int(float(query.get("interval", ["5"])[0])))
        with_host = query.get("host", ["false"])[0] == "true"
        cf = query.get("cf", ["AVERAGE"])[0]
        residents = set(self._resident(st, host)) - {f"dom0:{host}"}
        with self.lock:
            rows = [r for r in self.samples if r["t"] >= start]
        buckets: dict[int, list[dict]] = {}
        for r in rows:
            buckets.setdefault(int(r["t"]) // interval * interval, []).append(r)
        hcpus = int(st["hosts"][host]["cpus"])
        legend: list[str] = []
        columns: list = []           # (kind, name, field)
        if with_host:
            hu = uuid_of("host", host)
            for i in range(hcpus):
                legend.append(f"{cf}:host:{hu}:cpu{i}")
                columns.append(("hosts", host, "cpu"))
            for fld, key in (("cpu_avg", "cpu"), ("memory_total_kib", "mem_total_kib"),
                             ("memory_free_kib", "mem_free_kib"), ("pif_eth0_rx", "net_bytes"),
                             ("pif_eth0_tx", "net_bytes")):
                legend.append(f"{cf}:host:{hu}:{fld}")
                columns.append(("hosts", host, key))
        for vm in sorted(residents):
            vu = uuid_of("VM", vm)
            vcpus = int(st["hosts"][host]["domains"][vm].get("vcpus", 1))
            for i in range(vcpus):
                legend.append(f"{cf}:vm:{vu}:cpu{i}")
                columns.append(("vms", vm, "cpu"))
            for fld, key in (("memory", "mem"), ("vif_0_rx", "net_bytes"),
                             ("vif_0_tx", "net_bytes")):
                legend.append(f"{cf}:vm:{vu}:{fld}")
                columns.append(("vms", vm, key))
        out_rows = []
        for t in sorted(buckets, reverse=True):
            values = []
            for kind, name, key in columns:
                got = [r[kind][name][key] for r in buckets[t] if name in r[kind]]
                if key == "net_bytes" and kind == "vms":
                    got = [g / 2 for g in got]       # rx and tx each carry half
                values.append(sum(got) / len(got) if got else float("nan"))
            out_rows.append((t, values))
        faults = self.faults(st).get("rrd", {})
        if host in faults:
            return faults[host]
        parts = ["<?xml version=\"1.0\"?><xport><meta>",
                 f"<start>{min(buckets) if buckets else int(start)}</start>",
                 f"<step>{interval}</step>",
                 f"<end>{max(buckets) if buckets else int(start)}</end>",
                 f"<rows>{len(out_rows)}</rows><columns>{len(legend)}</columns><legend>"]
        parts += [f"<entry>{e}</entry>" for e in legend]
        parts.append("</legend></meta><data>")
        for t, values in out_rows:
            parts.append(f"<row><t>{t}</t>" + "".join(
                f"<v>{'NaN' if v != v else format(v, '.4f')}</v>" for v in values) + "</row>")
        parts.append("</data></xport>")
        return "".join(parts)
