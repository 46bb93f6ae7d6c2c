"""shell/vmtools-completion.bash completes every command's options from its own --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

COMPLETION = ROOT / "shell" / "vmtools-completion.bash"


def complete(*words: str) -> list[str]:
    script = (f"source {COMPLETION}; COMP_WORDS=({' '.join(words)}); "
              f"COMP_CWORD={len(words) - 1}; _vmtools_complete; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.mark.parametrize("words, expected", [
    (("vm-plan", "--obj"), ["--objective"]),
    (("vm-plan", "--objective", "re"), ["repair"]),
    (("vm-apply", "--driver", "xe"), ["xen", "xend-xmlrpc"]),
    (("vm-gmetric", "--tool"), ["--toolstack"]),
    (("vm-snapshot", "--example", ""), ["hotspot", "lab"]),
    (("vm-rebalance", "--d"), ["--domain", "--dry-run"]),
    (("vm-rebalance", "--j"), ["--jobs"]),
    (("vm-lab", "--sce"), ["--scenario"]),
    (("vm-plan", "--solver", ""), ["cbc", "highs"]),
    (("vm-plan", "--time-limit", ""), []),
    (("vm-replay", "--base"), ["--baseline"]),
    (("vm-replay", "--baseline", "th"), ["thr-mmt", "threshold"]),
])
def test_completion(words, expected):
    assert sorted(complete(*words)) == expected


def test_vm_rebalance_short_options_come_from_its_help():
    assert {"-a", "-c", "-h", "-k", "-n", "-q", "--version"} <= set(complete("vm-rebalance", "-"))


def test_every_console_script_is_completed():
    import tomllib
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    line = COMPLETION.read_text().splitlines()[-1]
    assert line.startswith("complete -F _vmtools_complete ")
    assert set(scripts) | {"vm-rebalance"} <= set(line.split()[3:])


def test_vm_web_options_complete():
    assert complete("vm-web", "--read") == ["--read-only"]
    assert complete("vm-web", "--listen", "") == []
