"""The planner's front door, vm-plan's settings table and the vmtools.state document (issue
20): one call plans for vm-plan and vm-replay alike; each setting is written once; one
versioned state document, refused whole when damaged."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import ROOT, run
from vmtools.errors import DataError, OptionError
from vmtools.model import Snapshot, loads
from vmtools.planner.front import Documents, plan_run
from vmtools.planner.settings import BY_NAME, SETTINGS, parse_argv, settings_from
from vmtools.state import STATE_FILE, State, read_state, write_state


@pytest.fixture(scope="module")
def hotspot() -> Snapshot:
    return Snapshot.from_dict(loads(run("vm-snapshot", "--example", "hotspot").stdout))


# ---------------------------------------------------------------- the settings table

def man_paragraph(flag: str) -> str:
    text = (ROOT / "man" / "vm-plan.1").read_text()
    text = text.replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
    blocks = text.split(".TP\n")
    mine = [b for b in blocks if re.match(rf"\.B[IR]? .*{re.escape(flag)}\b", b)]
    assert mine, f"man/vm-plan.1 does not document {flag}"
    return " ".join(mine[0].split())


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind is not bool and not s.document
                                     and (s.default is not None or s.shown_default)],
                         ids=lambda s: s.name)
def test_the_man_page_states_every_default_of_the_table(setting):
    text = man_paragraph(setting.flag)
    value = re.escape(setting.man_default)
    assert re.search(rf"default:? {value}(?![\w.])|(?<![\w.]){value}(?:, the | \()"
                     "default", text), \
        (setting.flag, setting.man_default, text)


def test_every_setting_is_an_option_of_vm_plan_and_nothing_else_is():
    help_text = run("vm-plan", "--help").stdout
    flags = set(re.findall(r"^  (?:-\w, )?(--[a-z][a-z-]+)", help_text, re.M))
    assert flags == {s.flag for s in SETTINGS if not s.hidden} | {
        "--format", "--output", "--textfile-dir", "--verbose", "--quiet", "--debug",
        "--version", "--help"}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.kind in (int, float)],
                         ids=lambda s: s.name)
def test_every_number_setting_refuses_nan_inf_and_the_absurd(setting):
    for bad in ("nan", "inf", "-inf", "1e30"):
        with pytest.raises(OptionError) as err:
            settings_from({setting.name: bad})
        assert err.value.on_command_line().startswith(setting.flag)


def test_out_of_range_values_name_the_flag_and_the_range():
    with pytest.raises(OptionError) as err:
        settings_from(cpu_target=1.5)
    assert err.value.on_command_line() == "--cpu-target 1.5: expected a fraction in (0, 1]"
    with pytest.raises(OptionError, match="K/N"):
        settings_from(hotspot_window="5/3")
    with pytest.raises(OptionError, match="pNN"):
        settings_from(demand="p100")
    assert settings_from({"threads": "4", "power": "yes"}).threads == 4


def test_a_command_line_string_parses_by_the_same_table():
    assert parse_argv(["--objective", "balance", "--time-limit=30", "-P", "4", "--power"]) == {
        "objective": "balance", "time_limit": "30", "parallel": "4", "power": True}
    for argv, message in ((["--bogus"], "no such option: --bogus"),
                          (["snap.json"], "no input file"),
                          (["-o", "x"], "-o has no place here"),
                          (["--time-limit"], "requires an argument")):
        with pytest.raises(Exception, match=re.escape(message)):
            parse_argv(argv)


def test_vm_replay_refuses_a_bad_plan_string_before_reading_anything(tmp_path):
    for text, flag in (("--cpu-target nan", "--cpu-target"), ("--threads 0", "--threads"),
                       ("--objective sideways", "--objective"), ("--nope", "--nope")):
        proc = run("vm-replay", str(tmp_path / "no-such-source"), "--plan", text)
        assert proc.returncode == 2, proc.stderr
        assert f"--plan {text!r}" in proc.stderr and flag in proc.stderr
        assert "no-such-source" not in proc.stderr
    proc = run("vm-replay", str(tmp_path / "x"), "--plan",
               f"--constraints {tmp_path / 'missing.json'}")
    assert proc.returncode == 2 and "missing.json" in proc.stderr


def test_vmtools_plan_variables_give_the_replay_its_defaults_too(tmp_path):
    proc = run("vm-replay", str(tmp_path / "x"), "--plan", "--objective balance",
               env={"VMTOOLS_PLAN_MIN_GAIN": "2"})
    assert proc.returncode == 2 and "--min-gain 2: expected a fraction in [0, 1)" in proc.stderr
    # the string never named --min-gain: the error says where its value was set
    assert proc.stderr.endswith("(set by VMTOOLS_PLAN_MIN_GAIN)\n")
    proc = run("vm-replay", str(tmp_path / "x"), "--plan", "--min-gain 3",
               env={"VMTOOLS_PLAN_MIN_GAIN": "2"})
    assert proc.returncode == 2 and "--min-gain 3: expected" in proc.stderr
    assert "set by" not in proc.stderr


# ---------------------------------------------------------------- the front door

def test_the_front_door_writes_nothing_and_returns_the_new_state(tmp_path, monkeypatch,
                                                                 hotspot):
    monkeypatch.chdir(tmp_path)
    settings = settings_from(objective="balance", hotspot_window="1/2", state="anywhere")
    state = State()
    result = plan_run(Documents(hotspot), settings, state)
    assert list(tmp_path.iterdir()) == []
    assert result.state is state and state.plan.observations[-1]["hot"] == ["node-4"]
    assert [a.vm for a in result.plan.actions]           # hot in 1 of 1: relieved
    again = plan_run(Documents(hotspot), settings, state)
    assert len(state.plan.observations) == 1               # the same snapshot, once
    assert [a.to_dict() for a in again.plan.actions] == \
        [a.to_dict() for a in result.plan.actions]


def test_vm_plan_prints_what_the_front_door_returns(tmp_path, hotspot):
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(hotspot.to_dict()))
    cli = json.loads(run("vm-plan", str(snap), "--objective", "balance").stdout)
    door = plan_run(Documents(hotspot), settings_from(objective="balance")).plan.to_dict()
    assert cli["actions"] == door["actions"] and cli["placement"] == door["placement"]


def test_rules_are_checked_against_each_snapshot_and_name_their_file(hotspot):
    docs = Documents(hotspot, {"format": "vmtools.constraints", "version": "1.0",
                               "rules": [{"rule": "pin", "vms": ["ghost"]}]}, "rules.json")
    with pytest.raises(DataError, match="^rules.json: .*ghost"):
        plan_run(docs, settings_from(strict_rules=True, objective="repair"))
    result = plan_run(docs, settings_from(objective="repair"))
    assert result.rules_skipped and "ghost" in result.rules_skipped[0]["message"]


# ---------------------------------------------------------------- the state document

def test_one_versioned_document_replaces_the_two_old_files_read_once(tmp_path, hotspot):
    (tmp_path / "vm-plan-power.json").write_text(json.dumps(
        {"standby": {"node-9": {"cluster": "xen-lab", "cpu": 8, "mem_mib": 32768,
                                "since": 1.0}}}))
    (tmp_path / "vm-plan-state.json").write_text(json.dumps(
        {"moved": {"web1": 5.0}, "placement": {"web1": "node-1"}}))
    state = read_state(str(tmp_path))
    assert "node-9" in state.power.standby and state.plan.moved == {"web1": 5.0}
    write_state(str(tmp_path), state)
    assert sorted(os.listdir(tmp_path)) == [STATE_FILE]
    doc = json.loads((tmp_path / STATE_FILE).read_text())
    assert (doc["format"], doc["version"]) == ("vmtools.state", "1.0")
    assert read_state(str(tmp_path)) == state


DAMAGED = [
    "{", "[]", '{"format": "vmtools.state", "version": "2.0"}',
    '{"format": "vmtools.plan", "version": "1.0"}',
    '{"format": "vmtools.state", "version": "1.0", "power": {"standby": {"x;rm": {}}}}',
    '{"format": "vmtools.state", "version": "1.0", "power": {"standby": {"n": {"cpu": 1e999}}}}',
    '{"format": "vmtools.state", "version": "1.0", "plan": {"samples": {"g": [[1, "x"]]}}}',
]


@pytest.mark.parametrize("content", DAMAGED)
def test_a_damaged_state_document_is_refused_whole_naming_file_and_fix(tmp_path, content):
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(DataError) as err:
        read_state(str(tmp_path))
    assert str(err.value).startswith(str(tmp_path / STATE_FILE))
    assert "vmtools.state" in str(err.value) and "remove it" in str(err.value)


def test_a_damaged_state_document_is_65_for_vm_plan_and_vm_status(tmp_path):
    content = DAMAGED[5]
    state = tmp_path / "runs" / ".plan-state"
    state.mkdir(parents=True)
    (state / STATE_FILE).write_text(content)
    snap = run("vm-snapshot", "--example", "lab").stdout
    for prog, args in (("vm-plan", ["--state", str(state)]),
                       ("vm-status", ["--runs", str(tmp_path / "runs")])):
        proc = run(prog, *args, "-", input=snap)
        assert proc.returncode == 65, (prog, proc.stderr)
        assert proc.stdout == "" and proc.stderr.count("\n") == 1
        assert "vmtools.state" in proc.stderr and "remove it" in proc.stderr
    assert (state / STATE_FILE).read_text() == content      # never half-trusted, never rewritten


def test_a_state_directory_that_does_not_exist_yet_is_made(tmp_path):
    """The first run of `vm-plan --state DIR` (vm-plan(1) EXAMPLES) exited 1, 'cannot open its
    lock .vmtools.state.lock: No such file or directory', where vm-apply makes --state-dir."""
    state = tmp_path / "new" / "plan-state"
    snap = run("vm-snapshot", "--example", "lab").stdout
    proc = run("vm-plan", "--state", str(state), "-", input=snap)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["format"] == "vmtools.plan"
    assert json.loads((state / STATE_FILE).read_text())["format"] == "vmtools.state"


def test_the_objectives_are_one_table_the_settings_name():
    from vmtools.planner.plan import OBJECTIVE_KINDS
    assert tuple(OBJECTIVE_KINDS) == BY_NAME["objective"].choices
