"""The README's tour, as written: its ``<!-- tour -->`` shell blocks run with bash, in a fresh
venv (``pip install`` of this clone, not editable), from a directory outside the clone, with a
HOME of their own; the ``<!-- lab-tour -->`` block runs against a real lab (root, gmond, gmetad,
sshd). Nothing may land in the clone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"


def blocks(marker: str) -> list[str]:
    text = README.read_text()
    found = re.findall(rf"<!-- {marker} -->\n```sh\n(.*?)```", text, flags=re.S)
    assert found, f"README.md has no <!-- {marker} --> block"
    return found


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)],
                          capture_output=True, text=True, timeout=900,
                          cwd=tmp_path_factory.mktemp("pip"))
    assert proc.returncode == 0, proc.stderr
    return venv


def clone_files() -> set[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files",
                          "--ignored"], capture_output=True, text=True)
    if out.returncode != 0:                       # not a git clone: list the files instead
        return {str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if ".venv" not in p.parts}
    return set(out.stdout.splitlines())


def run_tour(script: str, venv: Path, home: Path, cwd: Path, timeout: float = 600):
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home),
           "LANG": "C.UTF-8", "XDG_CONFIG_HOME": str(home / ".config")}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.mark.slow
def test_the_tour_runs_as_written_outside_the_clone(fresh_venv, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    before = clone_files()
    proc = run_tour("\n".join(blocks("tour")), fresh_venv, home, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tour = home / "vmtools-tour"
    assert sorted(p.name for p in tour.iterdir()) == ["plan.json", "rules.json", "snap.json"]
    out = proc.stdout
    assert "Hosts (6) from example:lab" in out and "would run" in out
    assert "evacuate node-3" not in out            # comments are not output
    assert "maintenance" in out                    # the repair plan names its reason
    wide = [line for line in out.splitlines() if len(line) > 80 and " " in line.strip()]
    assert not wide, wide
    assert clone_files() == before, "the tour left files in the clone"


@pytest.mark.slow
@pytest.mark.ganglia
@pytest.mark.sshd
def test_the_lab_tour_runs_as_written(fresh_venv, tmp_path):
    from vmtools.lab.ganglia import binaries_missing
    if binaries_missing() or os.geteuid() != 0 or not shutil.which("sshd", path="/usr/sbin"):
        pytest.skip("needs root, gmond, gmetad and sshd")
    home = tmp_path / "home"
    home.mkdir()
    lab_dir = tmp_path / "lab"                     # /tmp/lab in the README, private here
    script = blocks("lab-tour")[0].replace("/tmp/lab", str(lab_dir))
    proc = run_tour(script, fresh_venv, home, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "vm-apply:" in proc.stdout and " done, 0 failed" in proc.stdout, proc.stdout
    # kill %1 stopped the lab and every daemon it started
    import time
    deadline = time.monotonic() + 30
    while True:
        left = subprocess.run(["pgrep", "-f", str(lab_dir)], capture_output=True, text=True)
        if not left.stdout.strip() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left.stdout.strip(), f"left running: {left.stdout}"
