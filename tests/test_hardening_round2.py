"""Hardening, second round (issue 27): each class of the campaign, reproduced and refused at
its root. Numbers: one check (vmtools.numbers) for options, settings and readers; capacities
no host has are problems; every file read bounded; what hosts send is escaped."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run
from vmtools import numbers
from vmtools.errors import DataError, OptionError


def one_error_line(proc, code: int, prog: str, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"{prog}: error: "), \
        proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


# ----------------------------------------------------------------- numbers, one check


@pytest.mark.parametrize("value, bounds, wanted", [
    (float("inf"), {}, "expected a finite number, got inf"),
    (float("nan"), {}, "expected a finite number, got nan"),
    (True, {}, "expected a number, got true"),
    ("3", {}, 'expected a number, got "3"'),
    (0.0, {"lo": 0.0, "lo_open": True}, "expected a number > 0, got 0.0"),
    (1e300, {}, "expected a number <= 1e+15, got 1e+300"),
    (3.5, {"integer": True}, "expected an integer, got 3.5"),
    (2**60, {"integer": True}, "expected an integer <= 9007199254740992"),
])
def test_one_number_check_says_what_is_wrong(value, bounds, wanted):
    assert wanted in numbers.problem(value, **bounds)


def test_number_check_raises_the_callers_kind_of_error():
    assert numbers.number(2, "a.b", lo=0) == 2.0
    with pytest.raises(DataError, match=r"^t.csv:3: expected a finite number, got inf$"):
        numbers.parse("inf", "t.csv:3")
    with pytest.raises(DataError, match=r"^t.csv:3: expected a number, got \"1e999x\"$"):
        numbers.parse("1e999x", "t.csv:3")
    with pytest.raises(OptionError) as err:
        numbers.option("time_limit", float("nan"), lo=0.0, lo_open=True)
    assert err.value.on_command_line() == "--time-limit must be a finite number, got nan"


@pytest.mark.parametrize("prog, args, env, option", [
    ("vm-plan", ["--time-limit", "inf"], {}, "--time-limit"),
    ("vm-plan", ["--time-limit", "1e10"], {}, "--time-limit"),
    ("vm-plan", ["--max-duration", "nan"], {}, "--max-duration"),
    ("vm-plan", ["--max-moved", "nan"], {}, "--max-moved"),
    ("vm-plan", [], {"VMTOOLS_PLAN_TIME_LIMIT": "inf"}, "--time-limit"),
    ("vm-plan", [], {"VMTOOLS_PLAN_VERBOSE": "-4"}, "--verbose"),
    ("vm-gmetric", ["--timeout", "inf"], {}, "--timeout"),
    ("vm-gmetric", ["--interval", "inf"], {}, "--interval"),
    ("vm-gmetric", ["--window", "inf"], {}, "--window"),
    ("vm-gmetric", ["--tmax", str(2**32)], {}, "--tmax"),
    ("vm-replay", ["--step", "inf"], {}, "--step"),
    ("vm-replay", ["--warm-up", "nan"], {}, "--warm-up"),
    ("vm-snapshot", ["--timeout", "inf"], {}, "--timeout"),
    ("vm-status", ["--timeout", "inf"], {}, "--timeout"),
    ("vm-apply", ["--timeout", "-inf"], {}, "--timeout"),
])
def test_number_options_and_settings_refuse_inf_nan_and_the_absurd(prog, args, env, option):
    proc = run(prog, *args, env=env, input="")
    one_error_line(proc, 2, prog, option)


def test_a_number_setting_in_vmtools_toml_is_checked_too(tmp_path):
    conf = tmp_path / "vmtools.toml"
    conf.write_text("[common]\nverbose = -4\n")
    one_error_line(run("vm-snapshot", env={"VMTOOLS_CONFIG": str(conf)}), 2, "vm-snapshot",
                   "--verbose")
    conf.write_text("[vm-plan]\ntime_limit = inf\n")
    one_error_line(run("vm-plan", env={"VMTOOLS_CONFIG": str(conf)}, input="{}"), 2,
                   "vm-plan", "--time-limit", "finite")


def test_settings_file_of_endless_bytes_is_one_line(tmp_path):
    one_error_line(run("vm-plan", env={"VMTOOLS_CONFIG": "/dev/zero"}, input="{}"), 2,
                   "vm-plan", "/dev/zero", "larger than")


# ----------------------------------------------------------------- capacities


def snapshot_doc(host_mem: int = 4096) -> dict:
    return {"format": "vmtools.snapshot", "version": "1.0", "source": "test",
            "taken": "2026-12-07T05:00:00Z",
            "hosts": [{"name": "h1", "cpu": 4, "mem_mib": host_mem},
                      {"name": "h2", "cpu": 4, "mem_mib": 4096}],
            "vms": [{"name": "g1", "host": "h1", "cpu": 0.5, "mem_mib": 512}]}


def test_a_host_without_memory_is_bad_input_not_a_crash():
    proc = run("vm-plan", input=json.dumps(snapshot_doc(host_mem=0)))
    one_error_line(proc, 65, "vm-plan", "hosts[0].mem_mib", ">= 1")
