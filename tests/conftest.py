"""Shared test helpers: run an installed command through real pipes; start labs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
_OWN_BASETEMP = pytest.StashKey[str]()
ROOT_PREFIX = "vmtools-pytest-"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A temporary root of this session's own, unless --basetemp says otherwise.

    The SSH lab runs the stand-ins as an unprivileged user, who must reach the lab's state
    under the test's tmp_path. pytest makes ``/tmp/pytest-of-<user>`` private again (0700)
    whenever another pytest session starts on the machine, which cut a running session's SSH
    labs off mid-test ("xm: Permission denied", "Authentication failed"). A directory outside
    that root is left alone. It is removed when the session passes, kept (and named) when
    not, and then removed by a later session once it is a day old.
    """
    if config.option.basetemp is None:
        if not hasattr(config, "workerinput"):
            _remove_old_roots()
        config.option.basetemp = tempfile.mkdtemp(prefix=ROOT_PREFIX)
        config.stash[_OWN_BASETEMP] = config.option.basetemp
    # Commands a test runs without a state directory of its own (vm-apply's journal and
    # ledger) write under the session's root, never the machine's /var/lib/vmtools.
    if "VMTOOLS_STATE_DIR" not in os.environ:
        state = Path(config.option.basetemp) / "var-lib-vmtools"
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o755)
        os.environ["VMTOOLS_STATE_DIR"] = str(state)
    if not hasattr(config, "workerinput"):
        _compile_package()


def _remove_old_roots(days: float = 1.0) -> None:
    """Remove the roots a failed session kept (named at its end) once they are a day old.

    A failed full run kept 6 GB (the labs' gmetad archives, before the lab kept fewer), and
    the roots of failed or killed sessions piled up until /tmp was full and every test failed
    with "No space left on device". A root touched in the last day may be a running
    session's: it stays."""
    cutoff = time.time() - days * 86400
    for path in Path(tempfile.gettempdir()).glob(ROOT_PREFIX + "*"):
        try:
            if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _compile_package() -> None:
    """Byte-compile vmtools once per session (only what changed since: a few ms otherwise).

    The tests start the installed commands some 400 times. Where PYTHONDONTWRITEBYTECODE is
    set (common in containers and CI images), a module edited since its last ``.pyc`` was
    compiled again by every one of those starts: 0.1 s of CPU each for a branch that touched
    the planner. For the same reason the session itself writes its bytecode (below): pytest
    otherwise rewrote the asserts of every test module again in every worker, 3 s of CPU
    each. Both go to the ``__pycache__`` directories git ignores."""
    import compileall
    compileall.compile_dir(str(ROOT / "vmtools"), quiet=2)


sys.dont_write_bytecode = False         # see _compile_package


def pytest_unconfigure(config):
    path = config.stash.get(_OWN_BASETEMP, None)
    if path is None:
        return
    if getattr(config, "_vmtools_failed", False):
        print(f"\ntemporary files of the failed tests kept in {path}", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    session.config._vmtools_failed = exitstatus not in (0, 5)



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
        kw.setdefault("interval", 1.0)
        lab = Lab(scenario, workdir=workdir, **kw).start()
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()
