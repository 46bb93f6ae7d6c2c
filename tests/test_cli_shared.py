"""Behaviour every vmtools command shares, and docs that must not fall behind the code:
each installed command answers -h/--help and --version, rejects a bad option with exit 2,
and every option its --help lists is in its man page and in the README."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import ROOT, run

SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]+)")


def help_options(name: str) -> set[str]:
    proc = run(name, "--help")
    assert proc.returncode == 0, proc.stderr
    return set(OPTION.findall(proc.stdout)) - {"--help"}


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


@pytest.mark.parametrize("name", SCRIPTS)
def test_bad_option_is_a_usage_error(name):
    proc = run(name, "--no-such-option")
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
