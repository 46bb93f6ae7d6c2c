"""vm-replay --html: the page opens offline in a real headless Chromium, without console
errors, and draws every chart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run
from tests.test_replay import HOSTS, TRACE, write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")]


def open_in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after load, and the page's console lines."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    return proc.stdout, console


def test_page_opens_offline_and_draws_every_chart(tmp_path):
    t, h = write(tmp_path, "t.csv", TRACE), write(tmp_path, "h.csv", HOSTS)
    page = tmp_path / "replay.html"
    # a setting whose text would end a <script> element if it were not escaped
    r = run("vm-replay", t, "--hosts", h, "--every", "10", "--html", str(page), "-q",
            "--baseline", "none", "--baseline", "thr-mmt",
            "--plan", "--objective consolidate --explain")
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    # everything inline, and the page's policy forbids any fetch
    assert "<script src" not in text and "<link" not in text and "sourceMappingURL" not in text
    assert "default-src 'none'" in text
    dom, console = open_in_chromium(page, tmp_path / "profile")
    assert 'data-status="drawn 5 charts"' in dom, dom[-500:]
    assert console == []
    assert "thr-mmt" in dom and "SLATAH" in dom


def test_page_survives_hostile_names(tmp_path):
    from vmtools.replay.html import page as make_page
    from vmtools.replay.engine import SimOptions
    from vmtools.replay.report import run_replay
    from vmtools.replay.sources import read_csv_trace
    from vmtools.replay.baselines import NoMigration
    trace = read_csv_trace(write(tmp_path, "t.csv", TRACE), write(tmp_path, "h.csv", HOSTS))
    trace.notes.append('</script><script>document.body.dataset.status="owned"</script>')
    doc = run_replay(trace, [NoMigration('</script><b>x</b>')], SimOptions(every_minutes=10))
    f = tmp_path / "p.html"
    f.write_text(make_page(doc))
    dom, console = open_in_chromium(f, tmp_path / "profile")
    assert 'data-status="drawn 5 charts"' in dom            # the injected script never ran
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in dom        # the name is shown as text
    assert console == []
