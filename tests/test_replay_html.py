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


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values of a PNG's pixel data (read with
    the standard library: the IHDR chunk and the inflated IDAT chunks)."""
    import struct
    import zlib
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def test_page_fits_1280_px_and_its_screenshot_shows_it(tmp_path):
    """Many settings, long names, a day at five minutes and power actions: at 1280 px the page
    is not wider than the window, every chart is drawn, the screenshot is of the page."""
    from vmtools.replay.baselines import make_baseline
    from vmtools.replay.engine import SimOptions
    from vmtools.replay.html import page as make_page
    from vmtools.replay.report import run_replay
    from vmtools.replay.sources import read_csv_trace
    hosts = "name,cpu,mem_mib\n" + "".join(f"host-{i:02d},2,8192\n" for i in range(30))
    lines = ["time,guest,cpu,mem_mib"]
    for k in range(288):
        for g in range(40):
            cpu = 0.2 + 0.6 * ((k * (g + 3)) % 17) / 17
            lines.append(f"{k * 300},guest-{g:02d},{cpu:.3f},1024")
    trace = read_csv_trace(write(tmp_path, "t.csv", "\n".join(lines) + "\n"),
                           write(tmp_path, "h.csv", hosts))
    settings = [make_baseline(b) for b in ("none", "threshold", "sandpiper", "thr-mmt",
                                           "thr-mmt:threshold=0.7",
                                           "threshold:load_threshold=0.99,max_over=5")]
    doc = run_replay(trace, settings, SimOptions(every_minutes=5))
    assert any(doc["runs"][3]["series"]["host_off"]), "thr-mmt switched no host off"
    f = tmp_path / "wide.html"
    f.write_text(make_page(doc))
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1280,2400", "--virtual-time-budget=15000",
         f"--screenshot={shot}", f.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == (1280, 2400) and colours > 50
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile2'}",
         "--window-size=1280,2400", "--virtual-time-budget=15000", "--dump-dom", f.as_uri()],
        capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    assert 'data-status="drawn 5 charts"' in dom, dom[-800:]
    assert 'data-fits="yes"' in dom, dom[dom.find("data-fits"):][:120]
    assert "drawn 5 charts</p>" not in dom                   # no leftover status text
    for figure in ("SLATAH: mean over active hosts", "PDM: mean over guests", "SLAV = SLATAH"):
        assert figure in dom


def test_colours_are_fixed_per_name_and_coinciding_lines_differ():
    from vmtools.replay.html import _per_hour, styles
    a = styles(["none", "thr-mmt", "--state s", "--state s --power"])
    b = styles(["--state s --power", "sandpiper", "--state s", "thr-mmt", "none"])
    for name in a:
        assert a[name] == b[name]
    looks = [(s["colour"], tuple(s["dash"]), s["marker"]) for s in b.values()]
    assert len(set(looks)) == len(looks)
    # a day with 35 migrations in one tick is 35 an hour, not 35 x 12
    per_hour = _per_hour([0] * 20 + [35] + [0] * 20, 5)
    assert max(x for x in per_hour if x is not None) == 35
    assert per_hour[:11] == [None] * 11
