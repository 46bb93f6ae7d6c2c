"""vm-status and vm-web in vm-rebalance's domain mode (DOMAINS): each migration domain's
vm-plan keeps its state in PLAN_STATE/NAME, so its standby hosts, its vanished hosts and its
hosts in maintenance are read there, and vm-web's maintenance and power records go there.
Real files in temporary directories; the commands run as the operator runs them."""

from __future__ import annotations

import json
import re
import time

from tests.conftest import run


def two_domains(tmp_path, gone=("node-3",), domains=None, empty=()):
    """The hotspot example as two Ganglia clusters, east (node-1..3) and west (node-4..6),
    without the hosts ``gone`` (switched off: not in the snapshot), the hosts ``empty``
    running no guest."""
    proc = run("vm-snapshot", "--example", "hotspot")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    domains = domains or {}
    for h in doc["hosts"]:
        n = int(h["name"].split("-")[1])
        h["cluster"] = h["domain"] = domains.get(h["name"], "east" if n <= 3 else "west")
    doc["hosts"] = [h for h in doc["hosts"] if h["name"] not in gone]
    doc["vms"] = [v for v in doc["vms"] if v["host"] not in gone and v["host"] not in empty]
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(doc))
    return path


def standby(directory, name, cpu=16, mem_mib=63488, domain=None):
    from vmtools.state import read_state, write_state
    directory.mkdir(parents=True, exist_ok=True)
    state = read_state(str(directory))
    state.power.standby[name] = {"cluster": "", "cpu": cpu, "mem_mib": mem_mib,
                                 "since": time.time() - 3600,
                                 **({"domain": domain} if domain is not None else {})}
    write_state(str(directory), state)


def status(snap, state, *more):
    proc = run("vm-status", str(snap), "--runs", "", "--state", str(state), "-f", "json",
               *more)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_each_domains_standby_and_maintenance_come_from_its_own_directory(tmp_path):
    from vmtools.maintenance import set_maintenance
    snap = two_domains(tmp_path)
    state = tmp_path / "runs" / ".plan-state"        # vm-rebalance's default PLAN_STATE
    standby(state / "east", "node-3")                # east's vm-plan switched node-3 off
    (state / "west").mkdir(parents=True)
    set_maintenance(str(state / "west"), "node-5", True, now=1796621840.0)
    # left in PLAN_STATE itself from before DOMAINS: west has its own directory now, so
    # vm-plan for west does not read it, and neither does the view
    set_maintenance(str(state), "node-4", True)
    doc = status(snap, state)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["node-3"]["state"] == "standby" and hosts["node-3"]["domain"] == "east"
    assert hosts["node-3"]["cpus"] == 16 and not hosts["node-3"]["frozen"]
    assert hosts["node-5"]["maintenance"] == {"since": "2026-12-07T05:37:20Z", "by": "vmtools"}
    assert hosts["node-4"]["maintenance"] is None
    assert doc["summary"]["standby"] == 1 and doc["summary"]["hosts"] == 6
    assert doc["domain_state"] == {"east": str(state / "east"), "west": str(state / "west")}
    assert doc["domains"]["east"]["hosts"] == 3

    # the default --state is RUNS/.plan-state, read the same way; the table says it too
    proc = run("vm-status", str(snap), "--runs", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("6 hosts (5 online, 1 standby)")
    assert re.search(r"\nnode-5 +online,[^\n]*\n +maintenance\n", proc.stdout), proc.stdout
    assert re.search(r"\nnode-3 +standby ", proc.stdout), proc.stdout


def test_a_host_gone_from_its_domain_is_vanished_in_that_domain(tmp_path):
    """A host east's vm-plan saw an hour ago, not switched off by it, and missing now."""
    from vmtools.state import read_state, write_state
    snap = two_domains(tmp_path, gone=("node-2",))
    state = tmp_path / "plan-state"
    (state / "east").mkdir(parents=True)
    memory = read_state(str(state / "east"))
    memory.plan.hosts = {"node-1": time.time(), "node-2": time.time() - 3600}
    write_state(str(state / "east"), memory)
    hosts = {h["name"]: h for h in status(snap, state)["hosts"]}
    assert hosts["node-2"]["state"] == "vanished" and hosts["node-2"]["domain"] == "east"
    assert hosts["node-2"]["frozen"]["kinds"] == ["vanished-host"]
    # switched off by east's vm-plan instead: standby, not vanished
    standby(state / "east", "node-2")
    hosts = {h["name"]: h for h in status(snap, state)["hosts"]}
    assert hosts["node-2"]["state"] == "standby" and not hosts["node-2"]["frozen"]


def test_a_domain_name_that_is_no_safe_file_name_is_never_made_a_path(tmp_path):
    """A Ganglia cluster named '..' (hostile data) or a XAPI pool (xapi-pool:UUID): no
    directory is looked for; their hosts are read from PLAN_STATE itself, as with one
    domain."""
    from vmtools.maintenance import set_maintenance
    state = tmp_path / "deep" / "plan-state"
    state.mkdir(parents=True)
    # what '..' would reach: PLAN_STATE's parent holds a maintenance.json of its own
    set_maintenance(str(state.parent), "node-1", True)
    set_maintenance(str(state), "node-4", True)
    snap = two_domains(tmp_path, gone=(), domains={
        "node-1": "..", "node-2": "..", "node-3": "..",
        "node-4": "xapi-pool:9f1c", "node-5": "xapi-pool:9f1c", "node-6": "xapi-pool:9f1c"})
    doc = status(snap, state)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["node-1"]["maintenance"] is None
    assert hosts["node-4"]["maintenance"]["by"] == "vmtools"
    assert "domain_state" not in doc


def test_one_domain_reads_plan_state_itself_as_before(tmp_path):
    """No DOMAINS: no subdirectory, PLAN_STATE's own standby and maintenance; the document
    has no domain_state."""
    from vmtools.maintenance import set_maintenance
    proc = run("vm-snapshot", "--example", "hotspot", "-o", str(tmp_path / "snap.json"))
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "plan-state"
    standby(state, "node-9", domain="xen-lab")
    set_maintenance(str(state), "node-2", True)
    doc = status(tmp_path / "snap.json", state)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["node-9"]["state"] == "standby" and hosts["node-2"]["maintenance"]
    assert "domain_state" not in doc and "domains" not in doc


def test_vm_web_records_maintenance_and_power_in_the_hosts_domain(tmp_path):
    """vm-web's actions, as the page runs them: maintenance goes into the host's own
    domain's maintenance.json (the one its vm-plan reads), a host switched off into its
    domain's standby, and switching it on again finds it there."""
    from vmtools.maintenance import read_maintenance
    from vmtools.model import Snapshot, load_file
    from vmtools.status import domain_maintenance, domain_standby
    from vmtools.web.actions import (PlanSettings, build_plan, record_maintenance,
                                     record_power)
    snap = load_file(str(two_domains(tmp_path, gone=(), empty=("node-1",))),
                     "snapshot", Snapshot.from_dict)
    state = tmp_path / "plan-state"
    (state / "east").mkdir(parents=True)
    (state / "west").mkdir()
    settings = PlanSettings(standby=lambda s: domain_standby(s, str(state)),
                            maintenance=lambda s: domain_maintenance(s, str(state)),
                            state_dir=str(state))
    plan = build_plan(snap, settings, "maintenance", "node-5")
    lines: list[str] = []
    record_maintenance(str(state), plan, lines.append)
    assert list(read_maintenance(str(state / "west"))) == ["node-5"]
    assert read_maintenance(str(state)) == {} and read_maintenance(str(state / "east")) == {}
    assert str(state / "west" / "maintenance.json") in lines[0]
    assert "node-5" in domain_maintenance(snap, str(state))
    # vm-plan for west, as vm-rebalance runs it, obeys it
    west = tmp_path / "west.json"
    doc = json.loads((tmp_path / "snap.json").read_text())
    doc["hosts"] = [h for h in doc["hosts"] if h["domain"] == "west"]
    doc["vms"] = [v for v in doc["vms"] if v["host"] in {h["name"] for h in doc["hosts"]}]
    west.write_text(json.dumps(doc))
    proc = run("vm-plan", "--state", str(state / "west"), "--quiet", str(west))
    assert proc.returncode == 0, proc.stderr
    assert {"rule": "maintenance", "hosts": ["node-5"]} in json.loads(proc.stdout)["constraints"]
    with_end = build_plan(snap, settings, "end-maintenance", "node-5")
    record_maintenance(str(state), with_end, lines.append)
    assert read_maintenance(str(state / "west")) == {}

    # node-1 of east holds no guest: switched off, it is standby in east's state alone
    empty = "node-1"
    off = build_plan(snap, settings, "power-off", empty)
    assert record_power(str(state), off, {"actions": [{"id": 1, "outcome": "done"}]}) == [empty]
    assert empty in domain_standby(snap, str(state))
    from vmtools.state import read_state
    assert empty in read_state(str(state / "east")).power.standby
    assert not (state / "vmtools.state").exists()
    gone = Snapshot.from_dict(dict(snap.to_dict(), hosts=[
        h.to_dict() for h in snap.hosts if h.name != empty]))
    on = build_plan(gone, settings, "power-on", empty)
    assert on.origin.hosts[-1].domain == "east"
    assert on.origin.hosts[-1].migration == "xl-ssh"      # the whole record, transport too
    record_power(str(state), on, {"actions": [{"id": 1, "outcome": "done"}]})
    assert empty in read_state(str(state / "east")).power.waking
    assert not (state / "vmtools.state").exists()
    hosts = {h["name"]: h for h in status(tmp_path / "snap.json", state)["hosts"]}
    assert hosts[empty]["state"] == "online"


def test_vm_webs_history_finds_a_guests_samples_in_its_domains_state(tmp_path):
    """The history page's guests' CPU samples (vm-plan's demand window) of a host of west
    come from PLAN_STATE/west, as west's vm-plan keeps them; a damaged one is said."""
    from vmtools.state import read_state, write_state
    from vmtools.web.history import guest_samples
    state = tmp_path / "plan-state"
    (state / "west").mkdir(parents=True)
    (state / "..x").mkdir()              # not a domain's name: never read
    memory = read_state(str(state / "west"))
    memory.plan.placement = {"web1": "node-5", "db1": "node-4"}
    memory.plan.samples = {"web1": [[1796621840.0, 0.5], [1796621540.0, 0.42]],
                           "db1": [[1796621840.0, 1.5]]}
    write_state(str(state / "west"), memory)
    other = read_state(str(state / "..x"))
    other.plan.placement, other.plan.samples = {"g": "node-1"}, {"g": [[1796621840.0, 1.0]]}
    write_state(str(state / "..x"), other)
    assert guest_samples(str(state), "node-5") == (
        {"web1": [(1796621540.0, 0.42), (1796621840.0, 0.5)]}, None)
    assert guest_samples(str(state), "node-1") == ({}, None)
    (state / "west" / "vmtools.state").write_text("{trunc")
    samples, note = guest_samples(str(state), "node-5")
    assert samples == {} and "vmtools.state" in note


def test_a_xapi_pool_run_under_another_name_is_found_by_what_its_vm_plan_recorded(tmp_path):
    """DOMAINS="pool-a": vm-rebalance runs the pool's vm-plan with --state PLAN_STATE/pool-a,
    while the snapshot names its hosts' domain xapi-pool:UUID. The directory whose vm-plan
    recorded that domain for its hosts is the pool's: its standby host and its maintenance
    are shown; a subdirectory with a broken state is passed over."""
    from vmtools.maintenance import set_maintenance
    from vmtools.state import read_state, write_state
    pool = "xapi-pool:9f1c5e2a"
    snap = two_domains(tmp_path, domains={f"node-{n}": pool for n in (1, 2, 3)})
    state = tmp_path / "plan-state"
    (state / "pool-a").mkdir(parents=True)
    memory = read_state(str(state / "pool-a"))
    memory.plan.domains = {"node-1": pool, "node-2": pool, "node-3": pool}
    write_state(str(state / "pool-a"), memory)
    standby(state / "pool-a", "node-3")
    set_maintenance(str(state / "pool-a"), "node-2", True)
    (state / "broken").mkdir()
    (state / "broken" / "vmtools.state").write_text("{not json")
    doc = status(snap, state)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["node-3"]["state"] == "standby" and hosts["node-3"]["domain"] == pool
    assert hosts["node-2"]["maintenance"]["by"] == "vmtools"
    assert doc["domain_state"] == {pool: str(state / "pool-a")}


def test_the_hosts_of_a_domain_whose_source_did_not_answer_are_unanswered_not_vanished(tmp_path):
    """vm-plan takes a silent domain's hosts as out of its run (nothing planned, nothing
    frozen for them); vm-status says the same of them instead of calling them vanished,
    and a host gone from a domain that did answer is still vanished, in its domain."""
    state = tmp_path / "state"
    whole = two_domains(tmp_path, gone=())
    r = run("vm-plan", "--state", str(state), str(whole))
    assert r.returncode == 0, r.stderr

    def without(name, lose):
        doc = json.loads(whole.read_text())
        doc["hosts"] = [h for h in doc["hosts"] if h["domain"] == "east" and h["name"] not in lose]
        doc["vms"] = [v for v in doc["vms"] if v["host"] in {h["name"] for h in doc["hosts"]}]
        doc["problems"] = [{"kind": "unavailable-source", "domain": "west",
                            "message": "gmetad://127.0.0.1:8652: connection refused; its "
                                       "hosts are not in this snapshot"}]
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        return path

    silent = without("silent.json", ())
    out = status(silent, state)
    hosts = {h["name"]: h for h in out["hosts"]}
    for name in ("node-4", "node-5", "node-6"):
        assert hosts[name]["state"] == "unanswered" and hosts[name]["domain"] == "west"
        assert hosts[name]["knowledge"] == "unknown"
        assert hosts[name]["frozen"]["kinds"] == ["unavailable-source"]
        assert "source of its domain west did not answer" in hosts[name]["frozen"]["why"]
    assert out["domains"]["west"]["hosts"] == 3 and out["domains"]["west"]["online"] == 0
    assert out["domains"]["west"]["unavailable_sources"] == 1
    table = run("vm-status", str(silent), "--runs", "", "--state", str(state))
    assert table.returncode == 0, table.stderr
    assert re.search(r"node-4\s+unanswered, frozen", table.stdout)
    # vm-plan on the same snapshot plans east and calls nothing of west vanished
    plan = run("vm-plan", "--state", str(state), "-f", "json", str(silent))
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["summary"]["frozen"] == []

    # node-3 gone from east, which answered: vanished, in east
    gone = without("gone.json", ("node-3",))
    hosts = {h["name"]: h for h in status(gone, state)["hosts"]}
    assert hosts["node-3"]["state"] == "vanished" and hosts["node-3"]["domain"] == "east"
    assert hosts["node-3"]["frozen"]["kinds"] == ["vanished-host"]
    assert hosts["node-4"]["state"] == "unanswered"


def test_a_domain_kept_elsewhere_is_read_through_a_symbolic_link(tmp_path):
    """vm-rebalance's PLAN_STATE_NAME keeps a domain's vm-plan state outside PLAN_STATE
    (vm-rebalance(1)); vm-status(1) reads it through a symbolic link PLAN_STATE/NAME."""
    snap = two_domains(tmp_path)
    elsewhere = tmp_path / "srv" / "east-state"       # PLAN_STATE_east
    standby(elsewhere, "node-3")
    state = tmp_path / "plan-state"
    state.mkdir()
    (state / "east").symlink_to(elsewhere)
    doc = status(snap, state)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["node-3"]["state"] == "standby" and not hosts["node-3"]["frozen"]
    assert doc["domain_state"]["east"] == str(state / "east")
    # without the link the standby host is unknown to the view: neither standby nor listed
    (state / "east").unlink()
    hosts = {h["name"]: h for h in status(snap, state)["hosts"]}
    assert "node-3" not in hosts
