"""Property tests of the second hardening round (issue 27) over generated hostile input: the
readers and options added after the first round either refuse with the documented error or
give a result that holds what vmtools promises (finite numbers inside their bounds, printable
text); the command-level limits hold under an address-space cap (slow: they have budgets).

Hypothesis drives :mod:`tests.fuzz.generators` as in ``test_properties.py`` (same profiles:
``HYPOTHESIS_PROFILE=deep`` runs 20 times more examples)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import generators as gen
from vmtools import numbers
from vmtools.errors import DataError, UsageError, VmtoolsError
from vmtools.text import printable

settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("deep", max_examples=1200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

randoms = st.randoms(use_true_random=False)


def no_control(text: str) -> bool:
    return all(ch.isprintable() or ch == "\n" for ch in text)


# ----------------------------------------------------------------------------- one number check

@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                 st.text(max_size=8), st.booleans(), st.none()),
       st.one_of(st.none(), st.floats(-1e6, 1e6)), st.booleans())
def test_the_number_check_accepts_only_finite_numbers_in_range(value, lo, integer):
    bad = numbers.problem(value, lo=lo, integer=integer)
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float))) \
        and not isinstance(value, bool) and math.isfinite(value) \
        and (lo is None or value >= lo) \
        and value <= (numbers.MAX_INT if integer else numbers.MAX_NUMBER)
    assert (bad is None) == ok, (value, lo, integer, bad)
    assert bad is None or no_control(bad)


@given(st.sampled_from(gen.HOSTILE_NUMBERS + gen.HOSTILE_OPTION_NUMBERS))
def test_parsed_numbers_are_finite_or_a_data_error(text):
    try:
        value = numbers.parse(text, "f:1", lo=0)
    except DataError as exc:
        assert str(exc).startswith("f:1: ")
        return
    assert math.isfinite(value) and 0 <= value <= numbers.MAX_NUMBER


# ----------------------------------------------------------------------------- escaping

@given(st.text(max_size=60), st.sampled_from(gen.HOSTILE_TEXTS))
def test_printable_never_lets_a_control_character_through(text, hostile):
    shown = printable(text + hostile)
    assert shown.isprintable()
    assert no_control(printable(hostile + "\n" + text, newlines=True))


# ----------------------------------------------------------------------------- vm-replay's readers

@given(randoms)
def test_csv_traces_give_a_bounded_trace_or_name_file_and_line(tmp_path_factory, rng):
    from vmtools.model import HOST_MAX_CPU, HOST_MAX_MIB, HOST_MIN_CPU
    from vmtools.replay.sources import MAX_EPOCH, read_csv_trace
    d = tmp_path_factory.mktemp("csv")
    hosts_text, names = gen.hosts_csv(rng)
    (d / "h.csv").write_text(hosts_text)
    (d / "t.csv").write_text(gen.csv_trace(rng, names))
    try:
        trace = read_csv_trace(str(d / "t.csv"), str(d / "h.csv"))
    except DataError as exc:
        assert str(exc).startswith(str(d)) and no_control(str(exc)), str(exc)
        return
    for h in trace.hosts:
        assert HOST_MIN_CPU <= h.cpu <= HOST_MAX_CPU and 1 <= h.mem_mib <= HOST_MAX_MIB
    for s in trace.samples:
        assert 0 <= s.time <= MAX_EPOCH
        for dem in s.vms.values():
            assert math.isfinite(dem.cpu) and 0 <= dem.cpu <= HOST_MAX_CPU
            assert 0 <= dem.mem_mib <= HOST_MAX_MIB + 1
    assert trace.end - trace.start <= 366 * 86400 * len(trace.samples)


@given(randoms)
def test_power_models_are_bounded_or_refused(rng):
    from vmtools.power_model import MAX_WATTS, parse_power_model
    from vmtools.model import loads
    try:
        doc = loads(gen.mutate_json(rng, gen.power_model_doc(rng)), "power.json") \
            if rng.random() < 0.3 else gen.power_model_doc(rng)
        model = parse_power_model(doc)
    except DataError:
        return
    for e in model.entries:
        for u in (0.0, 0.35, 1.0):
            assert 0 <= e.watts(u) <= MAX_WATTS


# ----------------------------------------------------------------------------- files found on disk

@given(randoms)
def test_lab_scenarios_are_checked_or_refused(rng):
    from vmtools.lab.scenario import check_scenario, guest_loads, state_from_scenario
    doc = gen.scenario_doc(rng)
    try:
        scenario = check_scenario(doc)
    except DataError as exc:
        assert no_control(str(exc))
        return
    state_from_scenario(scenario)                    # what the lab starts from
    for t in (0.0, 1.5, 30.0):
        assert all(math.isfinite(v) and v >= 0 for v in guest_loads(scenario, t).values())


@given(randoms)
def test_a_damaged_run_result_is_read_field_by_field(tmp_path_factory, rng):
    from vmtools.runs import clean_result, headline, summary_text
    result = clean_result(gen.result_doc(rng))
    text = json.dumps(result, allow_nan=False)       # what vm-status prints
    assert "\\u001b" not in text and "\\u0007" not in text
    line = headline(result)
    summary = summary_text({**result, "run": result["run"] or "?"},
                           tmp_path_factory.mktemp("run"))
    assert no_control(line) and no_control(summary)


@given(randoms)
def test_a_damaged_power_state_gives_safe_names_and_finite_figures(tmp_path_factory, rng):
    """Read as vm-status reads it (the old file, or the power part of vmtools.state): safe
    names and finite figures, or a DataError naming the file (exit 65), never a crash."""
    from vmtools.errors import DataError
    from vmtools.model import is_safe_name
    from vmtools.state import LEGACY_POWER_FILE, STATE_FILE
    from vmtools.status import standby_hosts
    d = tmp_path_factory.mktemp("state")
    doc = gen.power_state_doc(rng)
    if rng.random() < 0.5:
        name, doc = STATE_FILE, {"format": "vmtools.state", "version": "1.0", "power": doc}
    else:
        name = LEGACY_POWER_FILE
    (d / name).write_text(gen.mutate_json(rng, doc) if rng.random() < 0.3 else json.dumps(doc))
    try:
        standby = standby_hosts(str(d))
    except DataError as exc:
        assert name in str(exc) and "remove it" in str(exc)
        return
    for name, rec in standby.items():
        assert is_safe_name(name)
        for key in ("cpu", "mem_mib"):
            assert rec[key] is None or (math.isfinite(rec[key]) and rec[key] >= 0)


# ----------------------------------------------------------------------------- number options

OPTION_COMMANDS = {
    "vm-plan": ["time-limit", "max-moved", "max-duration", "cpu-target", "threads", "seed",
                "verbose", "bandwidth", "standby-after"],
    "vm-replay": ["every", "step", "warm-up", "repeat", "bandwidth", "cpu-threshold"],
    "vm-snapshot": ["timeout", "stale-after"],
    "vm-status": ["timeout", "cpu-threshold"],
    "vm-apply": ["timeout", "parallel", "per-host", "connect-timeout"],
}


@settings(max_examples=40)
@given(randoms, st.sampled_from(sorted(OPTION_COMMANDS)))
def test_number_options_from_every_source_are_usage_errors_or_taken(tmp_path_factory, rng,
                                                                    prog):
    """A hostile value for a number option, through a flag, a VMTOOLS_* variable or
    vmtools.toml: exit 2 naming the option, or the command goes on to its input (here a
    missing file: exit 2 naming it). Never a traceback or exit 70. In process: fast."""
    import contextlib
    import importlib
    import io
    from vmtools.cli._common import error_line
    from vmtools.cli._settings import env_prefix, run
    option, value, how = gen.option_case(rng, OPTION_COMMANDS[prog])
    d = tmp_path_factory.mktemp("opt")
    argv = [str(d / "missing.json")]
    env = {"VMTOOLS_CONFIG": str(d / "vmtools.toml"), "XDG_CONFIG_HOME": str(d)}
    (d / "vmtools.toml").write_text("")
    if how == "flag":
        argv = [f"--{option}", value, *argv]
    elif how == "env":
        env[env_prefix(prog) + option.upper().replace("-", "_")] = value
    else:
        toml_value = {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(value, value)
        try:
            float(toml_value)
        except ValueError:
            toml_value = f'"{toml_value}"'
        (d / "vmtools.toml").write_text(f"[{prog}]\n{option.replace('-', '_')} = "
                                        f"{toml_value}\n")
    module = importlib.import_module("vmtools.cli." + prog.replace("-", "_"))
    err = io.StringIO()
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = run(module.app, prog, error_line, argv)
            except SystemExit as exc:
                rc = exc.code
    finally:
        os.environ.clear()
        os.environ.update(saved)
    text = err.getvalue()
    assert "Traceback" not in text and "internal error" not in text, text
    assert rc == 2, (prog, option, value, how, rc, text)
    assert sum(1 for line in text.splitlines() if ": error: " in line) == 1, text


# ----------------------------------------------------------------------------- limits, under a cap

AS_LIMIT = 1 << 30          # 1 GiB of address space for the child


def capped(argv: list[str], stdin: bytes | None = None, env: dict | None = None,
           timeout: float = 120) -> tuple[int, bytes, float]:
    """Run ``argv`` with RLIMIT_AS at :data:`AS_LIMIT`; (exit code, stderr, peak RSS MiB)."""
    import resource
    import tempfile

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    full = {k: v for k, v in os.environ.items() if not k.startswith("VMTOOLS_")}
    full["XDG_CONFIG_HOME"] = "/nonexistent-vmtools-fuzz"
    full.update(env or {})
    with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as ferr:
        fin.write(stdin or b"")
        fin.seek(0)
        child = subprocess.Popen(argv, stdin=fin, stdout=subprocess.DEVNULL, stderr=ferr,
                                 env=full, preexec_fn=limit)
        t0 = time.monotonic()
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                child.kill()
                _, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        ferr.seek(0)
        return os.waitstatus_to_exitcode(status), ferr.read(), usage.ru_maxrss / 1024


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plan-constraints", "apply-hosts", "snapshot-host",
                                  "replay-repeat", "replay-every", "config", "gmetric-xl"])
def test_endless_input_stays_bounded_under_an_address_space_cap(tmp_path, case):
    snap = subprocess.run([_bin("vm-snapshot"), "--example", "lab"], capture_output=True,
                          check=True).stdout
    env = {}
    stdin = None
    if case == "plan-constraints":
        argv, stdin, want = [_bin("vm-plan"), "--constraints", "/dev/zero"], snap, 65
    elif case == "apply-hosts":
        plan = subprocess.run([_bin("vm-plan")], input=snap, capture_output=True).stdout
        argv, stdin, want = [_bin("vm-apply"), "--dry-run", "--hosts", "/dev/zero"], plan, 65
    elif case == "snapshot-host":
        xml = tmp_path / "host.xml"
        with open(xml, "w") as fh:
            fh.write('<GANGLIA_XML VERSION="3.7.2" SOURCE="gmond"><CLUSTER NAME="c">'
                     '<HOST NAME="h1" REPORTED="1765000000" TN="1" TMAX="20">\n')
            line = '<METRIC NAME="container.vm.g{0}.cpu" VAL="1" TYPE="float"/>\n'
            for i in range(300_000):
                fh.write(line.format(i))
            fh.write("</HOST></CLUSTER></GANGLIA_XML>\n")
        argv, want = [_bin("vm-snapshot"), "-i", str(xml)], 0
    elif case in ("replay-repeat", "replay-every"):
        (tmp_path / "h.csv").write_text("name,cpu,mem_mib\na,2,4096\n")
        (tmp_path / "t.csv").write_text("time,guest,cpu,mem_mib\n1764547200,g1,1,100\n"
                                        "1764547500,g1,1,100\n")
        extra = ["--repeat", "100000000"] if case == "replay-repeat" else ["--every", "1e-300"]
        argv = [_bin("vm-replay"), str(tmp_path / "t.csv"), "--hosts", str(tmp_path / "h.csv"),
                "--baseline", "none", *extra]
        want = 2
    elif case == "config":
        argv, stdin, want = [_bin("vm-plan")], snap, 2
        env = {"VMTOOLS_CONFIG": "/dev/zero"}
    else:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "xl").write_text("#!/bin/sh\nexec tr '\\0' x < /dev/zero\n")
        (bin_dir / "xl").chmod(0o755)
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
        argv, want = [_bin("vm-gmetric"), "--dry-run", "--toolstack", "xl", "--window", "0",
                      "--gmond", "127.0.0.1:9"], 69
    rc, err, peak = capped(argv, stdin, env)
    text = err.decode("utf-8", "replace")
    assert rc == want, (rc, text[-500:])
    assert "MemoryError" not in text and "Traceback" not in text
    assert peak < AS_LIMIT / 2**20
