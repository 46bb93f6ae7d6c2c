"""Option values taken without pydantic (vmtools.cli._coerce) are what typer itself makes of
them, or typer's own refusal, for every option of every command."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import typer

from vmtools.cli._coerce import fast_coercion
from vmtools.cli._settings import COMMANDS

build_runtime_param = pytest.importorskip("typer._coercion").build_runtime_param

VALUES = [None, "", "0", "-0", "7", "-3", "007", "1.5", "-2.25", ".5", "1e3", "1_000", " 4",
          "inf", "nan", "x", "json", "table", "JSON", "auto", "consolidate", "mem", "cpu",
          "/tmp", "/nonexistent/file", "-", "a\0b", 0, 3, 2.5, -1.0, True, False, (),
          ("a", "b"), ["x"], (1,)]


def commands():
    for prog in COMMANDS:
        module = importlib.import_module("vmtools.cli." + prog.replace("-", "_"))
        yield prog, typer.main.get_command(module.app)


def outcome(call):
    try:
        value = call()
    except Exception as exc:        # noqa: BLE001 - the refusal is what is compared
        return ("refused", type(exc).__name__, exc.format_message()
                if hasattr(exc, "format_message") else str(exc))
    return ("taken", type(value).__name__, repr(value))     # repr: nan equals nan


@pytest.mark.parametrize("prog,command", list(commands()), ids=lambda x: getattr(x, "name", x))
def test_every_value_is_taken_or_refused_as_typer_does(prog, command):
    fast_coercion(command)
    ctx = command.make_context(prog, [], resilient_parsing=True)
    checked = 0
    for param in command.params:
        ours = param._runtime_param
        assert ours is not None, param.name
        theirs = build_runtime_param(param.type_descriptor)
        for value in VALUES:
            assert outcome(lambda: ours.coerce(value, param=param, ctx=ctx)) == \
                outcome(lambda: theirs.coerce(value, param=param, ctx=ctx)), \
                f"{prog} {param.name} {value!r}"
            checked += 1
    assert checked >= 10 * len(VALUES)


def test_a_command_start_does_not_import_pydantic():
    code = ("import sys; sys.argv = ['vm-plan', '--objective', 'consolidate', '-f', 'table', "
            "'--time-limit', '5', '--max-migrations', '3', '-o', '/dev/null', '--help']\n"
            "from vmtools.cli.vm_plan import main\n"
            "try: main()\n"
            "except SystemExit: pass\n"
            "print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().endswith("False")
