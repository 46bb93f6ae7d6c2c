"""Behaviour every vmtools command shares, and docs that must not fall behind the code:
each installed command answers -h/--help and --version, rejects a bad option with exit 2,
and every option its --help lists is in its man page and in the README."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import ROOT, run

SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]+)")


@functools.lru_cache(maxsize=None)      # the man page's and the README's test ask alike
def help_options(name: str) -> frozenset[str]:
    proc = run(name, "--help")
    assert proc.returncode == 0, proc.stderr
    return frozenset(OPTION.findall(proc.stdout)) - {"--help"}


def man_text(name: str) -> str:
    page = ROOT / "man" / f"{name}.1"
    assert page.exists(), f"{page} is missing"
    return page.read_text().replace("\\-", "-").replace("\\f[BIRP]", "")


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_and_version(name):
    proc = run(name, "-h")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"Usage: {name} ")
    assert "Exit codes:" in proc.stdout
    proc = run(name, "--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"{name} 0.1.0")


@pytest.mark.parametrize("name", SCRIPTS + ["vm-rebalance"])
def test_bad_option_is_a_usage_error(name):
    # vm-rebalance from the source tree: pip copies a script file at install time, so the
    # venv's copy is as old as the last install
    proc = run(name, "--no-such-option") if name in SCRIPTS else subprocess.run(
        [str(ROOT / "shell" / name), "--no-such-option"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"{name}: error: no such option: --no-such-option")
    assert proc.stderr.endswith(f"(see {name} --help)\n") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_is_in_the_man_page(name):
    text = man_text(name)
    missing = sorted(opt for opt in help_options(name) if opt not in text)
    assert not missing, f"man/{name}.1 does not document {missing}"
    for code in ("65", "69", "75"):
        assert code in text, f"man/{name}.1 lacks the exit code {code}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_option_is_in_the_readme(name):
    readme = (ROOT / "README.md").read_text()
    assert f"`{name}`" in readme or name in readme
    missing = sorted(opt for opt in help_options(name) if opt not in readme)
    assert not missing, f"README.md does not mention {name} {missing}"


MAN_PAGES = sorted(p.name for p in (ROOT / "man").glob("*.[1-8]"))


@pytest.mark.skipif(not shutil.which("man"), reason="man-db is not installed")
@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_page_renders_cleanly(page):
    proc = subprocess.run(["man", "--warnings=all", "-l", str(ROOT / "man" / page)],
                          capture_output=True, text=True, timeout=60,
                          env={"MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0", "PATH": "/usr/bin:/bin",
                               "LANG": "C.UTF-8"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr
    assert len(proc.stdout.splitlines()) > 20


# --- the man page's OPTIONS, both ways, with their defaults and settings variables -----------

TYPER_SCRIPTS = {name: target.split(":")[0] for name, target in tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["project"]["scripts"].items()}
ROFF_FONT = re.compile(r"\\f[BIRP]|\\f\(..")


def man_entries(name: str) -> dict[str, str]:
    """Each option a ``.TP`` heading of man/NAME.1 names -> the heading and its paragraph,
    roff escapes removed (a heading may name several options, which then share the text)."""
    lines = (ROOT / "man" / f"{name}.1").read_text().splitlines()
    entries: dict[str, str] = {}
    for i, line in enumerate(lines):
        if line != ".TP" or i + 1 == len(lines):
            continue
        body = []
        for follow in lines[i + 2:]:
            if follow.startswith((".TP", ".SH", ".SS", ".PP")):
                break
            body.append(follow)
        head = ROFF_FONT.sub("", lines[i + 1].replace("\\-", "-"))
        text = ROFF_FONT.sub("", " ".join([head, *body]).replace("\\-", "-"))
        for opt in re.findall(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)", head):
            entries.setdefault(opt, text)
    return entries


def typer_options(name: str) -> dict[str, object]:
    """Every option of a Python command -> its click parameter (from the app, not --help)."""
    import importlib

    import typer
    command = typer.main.get_command(importlib.import_module(TYPER_SCRIPTS[name]).app)
    return {opt: param for param in command.params if param.param_type_name == "option"
            for opt in (*param.opts, *param.secondary_opts)}


def _shown(value: object) -> str:
    value = getattr(value, "value", value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("name", SCRIPTS + ["vm-rebalance"])
def test_every_option_the_man_page_lists_exists(name):
    """The other way round: an option the man page describes that the command has not (renamed
    or removed) sends the admin to a usage error."""
    known = help_options(name) | {"--help", "-h"} | set(re.findall(
        r"(?<![\w-])(-[a-zA-Z])\b", run(name, "--help").stdout))
    if name in TYPER_SCRIPTS:                       # hidden ones too (--allow-problems)
        known |= set(typer_options(name))
    stale = sorted(opt for opt in man_entries(name) if opt not in known)
    assert not stale, f"man/{name}.1 describes options {name} does not have: {stale}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_man_page_states_every_default_help_shows(name):
    """A default --help shows ([default: 600]) is written in the option's man entry too, so
    the authority and the program cannot disagree on it unseen."""
    entries = man_entries(name)
    wrong = []
    for opt, param in typer_options(name).items():
        default = param.default
        if (not opt.startswith("--") or opt not in entries or param.hidden
                or param.show_default is False or default in (None, False, "", (), [])
                or callable(default) or opt in ("--verbose",)):
            continue
        shown = _shown(default)
        if not re.search(r"(?<![\w.])" + re.escape(shown) + r"(?![\w])", entries[opt]):
            wrong.append(f"{opt} (default {shown})")
    assert not wrong, f"man/{name}.1 does not state the defaults of {wrong}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_the_man_page_names_its_settings_variables_and_file(name):
    """Every Python command reads VMTOOLS_<COMMAND>_<OPTION> and its [vm-...] table of
    vmtools.toml (cli/_settings.py): its man page says so, with the right prefix."""
    from vmtools.cli._settings import env_prefix
    text = man_text(name).replace("\\fI", "").replace("\\fR", "")
    assert env_prefix(name) in text, f"man/{name}.1 does not name {env_prefix(name)}OPTION"
    assert "vmtools.toml" in text and f"[{name}]" in text, \
        f"man/{name}.1 does not name the [{name}] table of vmtools.toml"


# Variables the lab sets for its own stand-ins (xl, xm, a Domain-0's sysfs), never an admin's.
LAB_INTERNAL = {"VMTOOLS_LAB", "VMTOOLS_LAB_HOST", "VMTOOLS_LAB_STATE", "VMTOOLS_LAB_SYSFS"}


def test_every_variable_the_code_reads_is_in_a_man_page():
    """VMTOOLS_STATE_DIR, VMTOOLS_CONFIG, VMTOOLS_XAPI_USER...: a variable the code reads by
    name is one an admin may need, so some man page names it."""
    names = set()
    for path in [*(ROOT / "vmtools").rglob("*.py"), ROOT / "shell" / "vm-rebalance"]:
        names |= set(re.findall(r"\bVMTOOLS_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    pages = " ".join(p.read_text().replace("\\", "") for p in (ROOT / "man").glob("*.[1-8]"))
    settings = re.compile(r"VMTOOLS_(SNAPSHOT|PLAN|APPLY|GMETRIC|LAB|REPLAY|STATUS|WEB)_")
    undocumented = sorted(n for n in names - LAB_INTERNAL
                          if n not in pages and not settings.match(n))
    assert not undocumented, f"no man page names {undocumented}"


def _keys(doc: object, names: set[str], found: set[str]) -> set[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key not in names and " " not in key:        # a map keyed by guest or host
                found.add(key)
            _keys(value, names, found)
    elif isinstance(doc, list):
        for value in doc:
            _keys(value, names, found)
    return found


def test_every_field_of_the_documents_is_named_in_a_man_page(tmp_path):
    """A field a reader (a script, jq) meets in a snapshot, plan, report or status document is
    explained somewhere in man/ (vmtools-formats(5) for the documents, the command's page
    for its own summary fields)."""
    import json
    snap = run("vm-snapshot", "--example", "hotspot").stdout
    plan = run("vm-plan", "--explain", input=snap).stdout
    report = run("vm-apply", "--dry-run", "--offline", input=plan).stdout
    status = run("vm-status", "-", "-f", "json", "--runs", str(tmp_path), input=snap).stdout
    parsed = json.loads(snap)
    names = {h["name"] for h in parsed["hosts"]} | {v["name"] for v in parsed["vms"]}
    pages = " ".join(ROFF_FONT.sub("", p.read_text().replace("\\-", "-").replace("\\_", "_"))
                     for p in (ROOT / "man").glob("*.[1-8]"))
    unnamed = {}
    for what, text in (("snapshot", snap), ("plan", plan), ("report", report),
                       ("status", status)):
        keys = _keys(json.loads(text), names, set())
        missing = sorted(k for k in keys
                         if not re.search(r"(?<![\w-])" + re.escape(k) + r"(?![\w-])", pages))
        if missing:
            unnamed[what] = missing
    assert not unnamed, f"fields no man page names: {unnamed}"


def test_every_rule_kind_is_in_the_example_the_help_and_the_docs():
    """A rule kind the planner knows (priority came with --context-switch) is in the example
    that 'shows every kind of rule', in vm-plan --help's --constraints, in vm-plan(1) and the
    README; and the example is a valid constraints document."""
    import json

    from vmtools.rules.constraints import RULE_KINDS, parse_constraints
    example = json.loads((ROOT / "contrib" / "constraints.example.json").read_text())
    parse_constraints(example)
    missing = {
        "contrib/constraints.example.json": set(RULE_KINDS) - {r["rule"] for r in
                                                              example["rules"]},
        "vm-plan --help": {k for k in RULE_KINDS if k not in run("vm-plan", "--help").stdout},
        "man/vm-plan.1": {k for k in RULE_KINDS if k not in man_text("vm-plan")},
        "README.md": {k for k in RULE_KINDS if k not in (ROOT / "README.md").read_text()}}
    assert not any(missing.values()), missing


def test_log_lines_go_to_the_stderr_of_the_moment(capsys):
    """A command run in process (vm-replay runs settings so, as do tests) has its stderr
    swapped and closed afterwards; the lines logged later still reach the stderr of then,
    escaped, instead of 'Logging error' tracebacks about a closed file."""
    import io
    import logging
    import sys
    from vmtools.cli._common import setup_logging
    swapped = io.StringIO()
    real, sys.stderr = sys.stderr, swapped
    try:
        setup_logging("vm-test", 0, False, False)
        logging.getLogger("vmtools.test").warning("first \x1b[2J")
    finally:
        sys.stderr = real
    assert swapped.getvalue() == "vm-test: first \\x1b[2J\n"
    swapped.close()
    logging.getLogger("vmtools.test").warning("after the swap")
    err = capsys.readouterr().err
    assert err == "vm-test: after the swap\n"
    setup_logging("vm-test", 0, False, False)


@pytest.mark.parametrize("text", ['{\n  "a": "x"\n}', '{\n  "a": "x"\n}\n', "host \x1b[2J h\u00e9\n",
                                  "del \x7f\ttab", "\u2028line"])
def test_a_document_is_written_escaped_and_ends_with_one_newline(text, capsysbinary, tmp_path,
                                                                  monkeypatch):
    """What a command prints, to stdout or -o FILE: a host's escape sequence, DEL or tab shown
    escaped, never sent to the terminal; exactly one newline at the end; the same bytes both
    ways; to a stdout without bytes under it (io.StringIO) the same text."""
    import io
    import sys
    from vmtools.cli._common import emit
    from vmtools.text import printable
    want = printable(text if text.endswith("\n") else text + "\n", newlines=True)
    assert "\x1b" not in want and "\x7f" not in want and "\t" not in want
    emit(text, None)
    assert capsysbinary.readouterr().out == want.encode("utf-8")
    emit(text, tmp_path / "out.json")
    assert (tmp_path / "out.json").read_bytes() == want.encode("utf-8")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    emit(text, None)
    assert sys.stdout.getvalue() == want
