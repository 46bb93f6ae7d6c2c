"""Shared test helpers: run an installed command through real pipes; start labs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def script(name: str) -> str:
    """Path of an installed console script (vm-snapshot...) next to this interpreter."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.fail(f"{name} is not installed; run pip install -e . first")
        return found
    return str(path)


def run(name: str, *args: str, input: str | bytes | None = None, timeout: float = 120,
        env: dict | None = None, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run an installed command through real pipes; returns the completed process (text)."""
    full_env = dict(os.environ)
    full_env.pop("VMTOOLS_CONFIG", None)
    full_env.setdefault("XDG_CONFIG_HOME", "/nonexistent-vmtools-test-config")
    if env:
        full_env.update(env)
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run([script(name), *args], input=data, capture_output=True,
                          timeout=timeout, env=full_env, cwd=cwd)
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       proc.stdout.decode("utf-8", "replace"),
                                       proc.stderr.decode("utf-8", "replace"))


@pytest.fixture
def make_lab(tmp_path_factory):
    """Start labs (:class:`vmtools.lab.run.Lab`) in the test; all are stopped at its end."""
    from vmtools.lab.run import Lab
    labs = []

    def start(scenario, **kw):
        workdir = Path(tmp_path_factory.mktemp("lab"))
        lab = Lab(scenario, workdir=workdir, interval=1.0, **kw).start()
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()
