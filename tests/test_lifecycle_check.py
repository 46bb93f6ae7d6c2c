"""The replay checker's rules for the guest lifecycle (suspend, resume, create, checkpoint):
memory freed when a suspend ends, claimed when a resume or create starts; images and
configurations as safe absolute paths; a resumed guest is not running already."""

from __future__ import annotations

import pytest

from vmtools.errors import DataError
from vmtools.model import VM, Action, Host, Plan, Snapshot, is_safe_path, path_in
from vmtools.rules.check import check_plan, placement_after, stale_guests

GIB = 1024
IMG = "/var/lib/xen/save"


def snap() -> Snapshot:
    # h1: 4 GiB, full (a, b: 2 GiB each); h2: 4 GiB with c (2 GiB); h3 standby.
    return Snapshot(
        hosts=[Host(name="h1", cpu=4, mem_mib=4 * GIB), Host(name="h2", cpu=4, mem_mib=4 * GIB),
               Host(name="h3", cpu=4, mem_mib=4 * GIB, state="standby")],
        vms=[VM(name="a", host="h1", cpu=0.5, mem_mib=2 * GIB),
             VM(name="b", host="h1", cpu=0.5, mem_mib=2 * GIB),
             VM(name="c", host="h2", cpu=0.5, mem_mib=2 * GIB)])


def suspend(i, vm, src, after=(), image=None):
    return Action(id=i, op="suspend", vm=vm, src=src, dst="", mem_mib=2 * GIB,
                  after=list(after), image=image or f"{IMG}/{vm}.save")


def resume(i, vm, dst, after=(), image=None, mem=2 * GIB):
    return Action(id=i, op="resume", vm=vm, src="", dst=dst, mem_mib=mem, after=list(after),
                  image=image or f"{IMG}/{vm}.save", vcpus=1, cpu=0.5)


def create(i, vm, dst, after=(), mem=2 * GIB):
    return Action(id=i, op="create", vm=vm, src="", dst=dst, mem_mib=mem, after=list(after),
                  config=f"/etc/xen/{vm}.cfg", vcpus=2, cpu=0.5)


def plan(actions, placement, rules=()):
    return Plan(origin=snap(), placement=placement, actions=list(actions),
                constraints=list(rules))


def refused(p: Plan, *words: str) -> str:
    with pytest.raises(DataError) as err:
        check_plan(p)
    text = str(err.value)
    for w in words:
        assert w in text, text
    assert err.value.exit_code == 65
    return text


def test_a_suspend_frees_memory_only_when_it_ends():
    # d (2 GiB) resumes on full h1 once a's suspend has ended: safe ...
    good = plan([suspend(1, "a", "h1"), resume(2, "d", "h1", after=[1])],
                {"b": "h1", "c": "h2", "d": "h1"})
    check_plan(good)
    assert placement_after(good, [1]) == {"b": "h1", "c": "h2"}
    assert placement_after(good, [1, 2]) == {"b": "h1", "c": "h2", "d": "h1"}
    # ... and refused when the resume may start while a still holds its memory
    bad = plan([suspend(1, "a", "h1"), resume(2, "d", "h1")],
               {"b": "h1", "c": "h2", "d": "h1"})
    refused(bad, "host h1", "memory", "6144 MiB of 4096 MiB", "actions 2")


def test_a_create_claims_memory_when_it_starts_and_obeys_rules():
    check_plan(plan([create(1, "new", "h2")], {"a": "h1", "b": "h1", "c": "h2", "new": "h2"}))
    refused(plan([create(1, "new", "h1")], {"a": "h1", "b": "h1", "c": "h2", "new": "h1"}),
            "host h1", "memory")
    # rules may name the guests a plan creates
    refused(plan([create(1, "new", "h2")], {"a": "h1", "b": "h1", "c": "h2", "new": "h2"},
                 [{"rule": "spread", "vms": ["new", "c"]}]), "spread", "c", "new")
    refused(plan([create(1, "new", "h2")], {"a": "h1", "b": "h1", "c": "h2", "new": "h2"},
                 [{"rule": "ban", "vms": ["new"], "hosts": ["h2"]}]), "forbids new on h2")


def test_starting_a_guest_that_runs_already_is_refused():
    refused(plan([resume(1, "c", "h2")], {"a": "h1", "b": "h1", "c": "h2"}),
            "c already runs on h2")
    refused(plan([create(1, "c", "h2")], {"a": "h1", "b": "h1", "c": "h2"}),
            "c already runs on h2")


def test_a_suspended_guest_is_not_placed_and_cannot_move():
    refused(plan([suspend(1, "c", "h2")], {"a": "h1", "b": "h1", "c": "h2"}),
            "c: the actions leave it suspended")
    check_plan(plan([suspend(1, "c", "h2")], {"a": "h1", "b": "h1"}))
    refused(plan([suspend(1, "c", "h2"),
                  Action(id=2, vm="c", src="h2", dst="h1", mem_mib=2 * GIB, after=[1])],
                 {"a": "h1", "b": "h1", "c": "h1"}), "c runs on no host")
    refused(plan([suspend(1, "c", "h1")], {"a": "h1", "b": "h1"}), "c is on h2")


def test_suspend_then_resume_elsewhere_reads_the_image_it_wrote():
    check_plan(plan([suspend(1, "c", "h2"), resume(2, "c", "h1", after=[1, 3]),
                     suspend(3, "a", "h1")], {"b": "h1", "c": "h1"}))
    refused(plan([suspend(1, "c", "h2"), resume(2, "c", "h2", after=[1],
                                                image=f"{IMG}/other.save")],
                 {"a": "h1", "b": "h1", "c": "h2"}), "reads /var/lib/xen/save/other.save")
    refused(plan([suspend(1, "c", "h2"), suspend(2, "a", "h1", image=f"{IMG}/c.save")],
                 {"b": "h1"}), "writes /var/lib/xen/save/c.save")


def test_resume_on_a_standby_host_needs_its_power_on_first():
    refused(plan([resume(1, "d", "h3")], {"a": "h1", "b": "h1", "c": "h2", "d": "h3"}),
            "h3 is standby")
    check_plan(plan([Action.power(1, "power-on", "h3"), resume(2, "d", "h3", after=[1])],
                    {"a": "h1", "b": "h1", "c": "h2", "d": "h3"}))
    refused(plan([Action.power(1, "power-on", "h3"), resume(2, "d", "h3")],
                 {"a": "h1", "b": "h1", "c": "h2", "d": "h3"}), "before h3 is switched on")


def test_a_pinned_guest_may_be_checkpointed_but_not_suspended():
    rules = [{"rule": "pin", "vms": ["c"]}]
    chk = Action(id=1, op="checkpoint", vm="c", src="h2", dst="", mem_mib=2 * GIB,
                 image=f"{IMG}/c.chk")
    check_plan(plan([chk], {"a": "h1", "b": "h1", "c": "h2"}, rules))
    refused(plan([suspend(1, "c", "h2")], {"a": "h1", "b": "h1"}, rules), "pinned")


def test_spread_guests_may_both_be_suspended():
    rules = [{"rule": "spread", "vms": ["a", "c"]}]
    check_plan(plan([suspend(1, "a", "h1"), suspend(2, "c", "h2")], {"b": "h1"}, rules))


def test_stale_check_sees_a_guest_to_resume_running_already():
    p = plan([resume(1, "d", "h2")], {"a": "h1", "b": "h1", "c": "h2", "d": "h2"})
    assert stale_guests(p, {"a": "h1", "b": "h1", "c": "h2"}) == []
    assert stale_guests(p, {"a": "h1", "b": "h1", "c": "h2", "d": "h1"}) == ["d"]


@pytest.mark.parametrize("path,ok", [
    ("/var/lib/xen/save/web1.save", True), ("/srv/images/a_b-c+1.img", True),
    ("relative/web1.save", False), ("/var/lib/xen/save/../../etc/passwd", False),
    ("/var/lib/xen/save/./x", False), ("/var//lib", False), ("/var/lib/x;rm -rf /", False),
    ("/var/lib/$(id)", False), ("/var/lib/x y", False), ("/var/lib/.hidden", False),
    ("/", False), ("/var/lib/x\n", False)])
def test_only_safe_absolute_paths(path, ok):
    assert is_safe_path(path) is ok


def test_path_in_its_directory():
    assert path_in("/var/lib/xen/save/web1.save", "/var/lib/xen/save")
    assert path_in("/var/lib/xen/save/web1.save", "/var/lib/xen/save/")
    assert not path_in("/var/lib/xen/save/sub/web1.save", "/var/lib/xen/save")
    assert not path_in("/var/lib/xen/web1.save", "/var/lib/xen/save")


def test_a_plan_document_with_an_escaping_image_is_refused_where_it_is():
    doc = plan([suspend(1, "c", "h2")], {"a": "h1", "b": "h1"}).to_dict()
    assert doc["actions"][0] == {"id": 1, "op": "suspend", "vm": "c", "src": "h2",
                                 "image": f"{IMG}/c.save", "mem_mib": 2048, "after": [],
                                 "reason": ""}
    again = Plan.from_dict(doc)
    assert again.actions[0].image == f"{IMG}/c.save"
    doc["actions"][0]["image"] = f"{IMG}/../../../etc/shadow"
    with pytest.raises(DataError) as err:
        Plan.from_dict(doc)
    assert err.value.where == "actions[0].image" and "unsafe path" in err.value.message
    created = plan([create(1, "new", "h2")], {"a": "h1", "b": "h1", "c": "h2", "new": "h2"})
    doc = created.to_dict()
    assert Plan.from_dict(doc).actions[0].config == "/etc/xen/new.cfg"
    doc["actions"][0]["config"] = "/etc/xen/new.cfg; reboot"
    with pytest.raises(DataError) as err:
        Plan.from_dict(doc)
    assert err.value.where == "actions[0].config"
