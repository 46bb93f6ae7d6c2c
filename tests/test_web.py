"""vm-web: the login gate, CSRF, escaping, the listen rule, and in a real browser (Debian's
chromium through chromedriver's W3C WebDriver API, tests/webdriver.py) against the lab: every
host and guest listed, a migration started from the page lands in the lab and on the page, a
suspend, its resume, an evacuation and a maintenance likewise, nothing without the login, no
forged action, hostile names as text, no console error."""

from __future__ import annotations

from http.client import HTTPException
import http.server as httpserver
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from vmtools.errors import DataError, UsageError
from vmtools.model import Problem, Snapshot, VM, Host
from vmtools.web import pages
from vmtools.web.auth import Gate, csrf_ok, read_or_create_token

from tests import webdriver
from tests.conftest import script

EXAMPLE = Path(__file__).resolve().parent.parent / "vmtools" / "examples" / "lab-gmetad.xml"
HOSTILE = "<script>alert(1)</script>"


# ---------------------------------------------------------------- the gate (fast)

def test_token_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "web-token"
    token = read_or_create_token(str(path))
    assert len(token) >= 32 and os.stat(path).st_mode & 0o777 == 0o600
    assert read_or_create_token(str(path)) == token
    os.chmod(path, 0o644)
    with pytest.raises(UsageError, match="mode 0644 lets others read or change it; chmod 600"):
        read_or_create_token(str(path))
    os.chmod(path, 0o620)               # a group that may write the token is refused too
    with pytest.raises(UsageError, match="mode 0620"):
        read_or_create_token(str(path))


def test_one_time_login_is_spent_and_sessions_expire():
    now = [1000.0]
    gate = Gate("t" * 40, lifetime=60, clock=lambda: now[0])
    code = gate.new_one_time()
    s = gate.login(code)
    assert s is not None and gate.session(s.sid) is s
    assert gate.login(code) is None, "a one-time login opened a second session"
    assert gate.login("wrong") is None and gate.login("") is None
    assert gate.login("t" * 40) is not None           # the token file's token always works
    assert csrf_ok(s, s.csrf) and not csrf_ok(s, None) and not csrf_ok(s, "x" + s.csrf)
    now[0] += 61
    assert gate.session(s.sid) is None, "a session outlived its lifetime"


def test_hostile_texts_are_escaped_on_the_cluster_page():
    from vmtools.status import build_status
    snap = Snapshot(hosts=[Host(name="n1", cpu=4, mem_mib=8192)],
                    vms=[VM(name="web1", host="n1", vcpus=1, cpu=0.5, mem_mib=1024)],
                    problems=[Problem(kind="unsafe-name", message=f"a guest {HOSTILE}",
                                      host="n1")])
    status = build_status(snap, None, None)
    text = pages.cluster_page(status, snap.vms, {}, [], 'c"><script>', False, (0.9, 0.95))
    assert HOSTILE not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'value="c&quot;&gt;&lt;script&gt;"' in text
    assert text.count("<script") == 1                      # /static/app.js alone


def test_listening_beyond_loopback_needs_tls(tmp_path):
    from typer.testing import CliRunner
    from vmtools.cli.vm_web import app
    r = CliRunner().invoke(app, ["--listen", "0.0.0.0", "--example", "lab",
                                 "--token-file", str(tmp_path / "t")])
    assert r.exit_code == 2 and "--tls-cert" in r.output, r.output
    assert r.output.count("\n") == 1 and not (tmp_path / "t").exists()
    r = CliRunner().invoke(app, ["--listen", "192.0.2.1", "--tls-cert", str(tmp_path / "c"),
                                 "--token-file", str(tmp_path / "t")])
    assert r.exit_code == 2 and "--tls-key" in r.output, r.output


# ---------------------------------------------------------------- a running vm-web

class Server:
    """vm-web started as a user starts it; ``url`` is its first line of output."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None):
        env = dict(env or os.environ)
        env["VMTOOLS_STATE_DIR"] = env.get("VMTOOLS_STATE_DIR") or str(tmp / "state")
        env.setdefault("XDG_CONFIG_HOME", str(tmp / "no-config"))
        Path(env["VMTOOLS_STATE_DIR"]).mkdir(parents=True, exist_ok=True)
        self.err = open(tmp / "vm-web.err", "w+")
        self.proc = subprocess.Popen([script("vm-web"), "--port", "0", "--runs", "",
                                      "--token-file", str(tmp / "web-token"), *args],
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=env)
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            self.err.seek(0)
            raise AssertionError(f"vm-web printed no URL: {self.err.read()}")
        self.base = self.url.split("/login")[0]
        self.token = (tmp / "web-token").read_text().strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.err.close()


def http(method: str, url: str, data: dict | None = None, cookie: str | None = None,
         headers: dict | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if cookie:
        req.add_header("Cookie", cookie)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def login(server: Server) -> tuple[str, str]:
    """(session cookie, CSRF token) through the token file's token."""
    req = urllib.request.Request(server.base + "/login", method="POST",
                                 data=urllib.parse.urlencode({"token": server.token}).encode())

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    try:
        urllib.request.build_opener(NoRedirect).open(req, timeout=30)
        raise AssertionError("no redirect after login")
    except urllib.error.HTTPError as exc:
        assert exc.code == 303
        cookie = exc.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    cookie = cookie.split(";")[0]
    _, page = http("GET", server.base + "/", cookie=cookie)
    return cookie, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


# ---------------------------------------------------------------- in the browser, on the lab

needs_browser = pytest.mark.skipif(bool(webdriver.missing()), reason=str(webdriver.missing()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from vmtools.lab.ganglia import binaries_missing
    if binaries_missing():
        pytest.skip("needs gmond and gmetad")
    from vmtools.lab.run import Lab
    # migrations at 256 MiB/s: web1's 1 GiB takes about 4 s, long enough to be seen moving
    lab = Lab("steady", workdir=tmp_path_factory.mktemp("lab"), interval=1.0,
              mib_per_s=256.0).start()
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def server(lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    args = ["--gmetad", lab.ganglia.gmetad_address, "--state", str(tmp / "plan-state")]
    if lab.ssh:
        args += ["--image-dir", str(lab.ssh.image_dir)]
    apply_args = lab.apply_args()
    for flag in ("--hosts", "--state-dir", "--ipmi-credentials", "--ssh-user", "--ssh-key",
                 "--known-hosts"):
        for i, a in enumerate(apply_args):
            if a == flag:
                args += [flag, apply_args[i + 1]]
    s = Server(tmp, *args, env=lab.env())
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    if webdriver.missing():
        pytest.skip(webdriver.missing())
    b = webdriver.Browser()
    yield b
    b.quit()


def console_errors(browser) -> list[dict]:
    return [e for e in browser.log() if e.get("level") == "SEVERE"]


def wait_title(browser, prefix: str) -> None:
    """After a click: form posts and navigations end when the new page is there."""
    browser.wait_for(lambda: browser.title.startswith(prefix), timeout=60,
                     what=f"the page {prefix!r}")


def host_section_text(browser, host: str) -> str:
    return browser.text(browser.find(f"section#host-{host}"))


def guests_shown(browser, host: str) -> set[str]:
    """The guests listed under ``host`` (not any text naming them, such as a problem)."""
    return {browser.text(e) for e in browser.find_all(f"section#host-{host} span.guest")}


@pytest.mark.slow
@needs_browser
def test_the_page_lists_every_host_and_guest_and_a_migration_lands(lab, server, browser):
    truth = lab.wait_for_truth()
    browser.get(server.url)                           # the one-time login of the first line
    assert browser.title.startswith("Cluster"), browser.body_text()[:300]
    assert "token=" not in browser.url
    for h in truth["hosts"]:
        assert guests_shown(browser, h["name"]) == {v["name"] for v in truth["vms"]
                                                    if v["host"] == h["name"]}, h["name"]
    assert console_errors(browser) == []

    # migrate web1 off node-1, to node-2, from the page
    assert lab.placement()["web1"] == "node-1"
    link = browser.find('section#host-node-1 a[href="/action?op=migrate&target=web1"]')
    browser.click(link)
    wait_title(browser, "migrate web1")
    browser.click(browser.find('select#dst option[value="node-2"]'))
    browser.click(browser.find('form[action="/plan"] button'))
    wait_title(browser, "Confirm: migrate web1 to node-2")
    assert "node-1 → node-2" in browser.body_text()
    assert lab.placement()["web1"] == "node-1", "something ran before the confirmation"
    assert console_errors(browser) == []
    # while it runs, the cluster page (another session) shows web1 in migration: the lab
    # holds web1's transfer until the page has been seen (a 4-s move could end unseen on a
    # slow machine)
    lab.set_fault("hold", ["web1"])
    try:
        browser.click(browser.find("button.go"))
        cookie, _ = login(server)
        deadline = time.time() + 120
        while True:
            _, page = http("GET", server.base + "/", cookie=cookie)
            if "migrating to node-2" in page.split('id="host-node-1"')[1].split("</section>")[0]:
                break
            assert time.time() < deadline, "the cluster page never showed web1 in migration"
            time.sleep(0.1)
    finally:
        lab.set_fault("hold", [])
    # live progress, then the report (the page reloads itself when the run ends)
    browser.wait_for(lambda: "Report" in browser.body_text(), timeout=120, what="the report")
    assert browser.text(browser.find("#job-state")) == "done", browser.body_text()
    assert [browser.text(e) for e in browser.find_all("td.outcome")] == ["done"]
    assert "web1" in browser.text(browser.find("#job-lines"))
    assert lab.placement()["web1"] == "node-2"
    assert console_errors(browser) == []

    # the cluster page shows it landed once the monitoring says so
    def landed():
        browser.get(server.base + "/")
        return "web1" in guests_shown(browser, "node-2") and \
            "web1" not in guests_shown(browser, "node-1")
    browser.wait_for(landed, timeout=60, what="web1 on node-2 on the page")
    for path in ("/plans", "/history", "/replays", "/job/1"):
        browser.get(server.base + path)
        assert browser.title != "Log in — vm-web"
    assert console_errors(browser) == []
    if os.environ.get("VM_WEB_SCREENSHOT"):
        browser.get(server.base + "/")
        browser.screenshot(os.environ["VM_WEB_SCREENSHOT"])


def act_in_browser(browser, path: str, title: str, dst: str | None = None) -> None:
    """From the cluster page: the action's link, its form, its confirmation, Run it; returns
    when the report is there (done)."""
    browser.click(browser.find(f'a[href="{path}"]'))
    browser.wait_for(lambda: browser.find_all('form[action="/plan"] button'), timeout=60,
                     what="the action's form")
    if dst is not None:
        browser.click(browser.find(f'select#dst option[value="{dst}"]'))
    browser.click(browser.find('form[action="/plan"] button'))
    wait_title(browser, f"Confirm: {title}")
    browser.click(browser.find("button.go"))
    browser.wait_for(lambda: "Report" in browser.body_text(), timeout=120, what="the report")
    assert browser.text(browser.find("#job-state")) == "done", browser.body_text()


@pytest.mark.slow
@needs_browser
def test_suspend_resume_evacuate_and_maintenance_from_the_page(lab, server, browser,
                                                               tmp_path):
    """A guest suspended from the page is suspended in the lab (its image written) and
    listed suspended; resumed from the page it runs again; a host evacuated from the page is
    empty; put in maintenance, vm-plan --state sends it nothing."""
    import json
    if not lab.ssh:
        pytest.skip("needs sshd (the suspend image is written by the xl stand-in)")
    lab.wait_for_truth()
    cookie, csrf = login(server)
    browser.get(server.base + "/")
    if browser.title.startswith("Log in"):
        browser.get(server.url.replace(server.url.split("token=")[1], server.token))
    assert browser.title.startswith("Cluster")
    image = Path(lab.ssh.image_dir) / "web7.save"

    # suspend web7 (node-6)
    assert lab.placement()["web7"] == "node-6"
    act_in_browser(browser, "/action?op=suspend&target=web7", "suspend web7")
    assert "web7" not in lab.placement() and image.exists()

    def suspended():       # in the suspended guests' table at once (vm-apply's ledger), and
        browser.get(server.base + "/")      # off node-6 once the monitoring says so
        table = browser.text(browser.find("table")) if browser.find_all("table") else ""
        return "web7" in table and "node-6" in table and \
            "web7" not in guests_shown(browser, "node-6")
    browser.wait_for(suspended, timeout=60, what="web7 shown suspended, on no host")
    assert console_errors(browser) == []

    # resume it, on any host with room
    act_in_browser(browser, "/action?op=resume&target=web7", "resume web7")
    assert "web7" in lab.placement() and not image.exists()

    def back():
        browser.get(server.base + "/")
        return any("web7" in guests_shown(browser, h) for h in lab.placement().values())
    browser.wait_for(back, timeout=60, what="web7 running on the page again")
    assert not browser.find_all("table") or "web7" not in browser.text(browser.find("table"))

    # evacuate node-5: its guests leave it in the lab, then on the page
    leaving = {g for g, h in lab.placement().items() if h == "node-5"}
    assert leaving
    act_in_browser(browser, "/action?op=evacuate&target=node-5", "evacuate node-5")
    assert "node-5" not in lab.placement().values()

    def empty():
        browser.get(server.base + "/")
        return not guests_shown(browser, "node-5")
    browser.wait_for(empty, timeout=60, what="node-5 empty on the page")
    assert console_errors(browser) == []

    # maintenance of the empty host from the page, then a vm-rebalance-like vm-plan run
    view = run_action(server, cookie, csrf, "maintenance", "node-5")
    assert view["state"] == "done", view
    truth = lab.wait_for_truth()
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps(truth))
    state = Path(server.err.name).parent / "plan-state"      # the server's --state
    plan = lab.run("vm-plan", "--state", str(state), "-q", str(snap))
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    assert {"rule": "maintenance", "hosts": ["node-5"]} in doc["constraints"]
    assert all(a.get("dst") != "node-5" for a in doc["actions"])
    assert "node-5" not in doc["placement"].values()
    view = run_action(server, cookie, csrf, "end-maintenance", "node-5")
    assert view["state"] == "done", view
    _, page = http("GET", server.base + "/", cookie=cookie)
    assert "MAINTENANCE" not in page.split('id="host-node-5"')[1].split("</section>")[0]


@pytest.mark.slow
@needs_browser
def test_without_the_login_every_page_and_action_is_refused(lab, server, browser):
    before = lab.placement()
    for path in ("/", "/plans", "/history", "/replays", "/job/1", "/job/1.json",
                 "/action?op=migrate&target=web2", "/run?name=x", "/replays/x.html"):
        code, page = http("GET", server.base + path)
        assert code == 303 and "web2" not in page and "node-2" not in page, path
    for path, data in (("/plan", {"op": "migrate", "target": "web2", "dst": "node-3"}),
                       ("/run", {"job": "1"}), ("/logout", {})):
        code, _ = http("POST", server.base + path, data)
        assert code == 403, path
    code, _ = http("GET", server.base + "/login?token=not-the-token")
    assert code == 403
    spent = server.url
    http("GET", spent)          # spent now, if no earlier test of this module spent it
    code, _ = http("GET", spent)
    assert code == 403, "the one-time login worked twice"
    # in the browser, a fresh profile's view: the login page and nothing of the cluster
    browser.cmd("DELETE", "/cookie")
    browser.get(server.base + "/")
    assert browser.title == "Log in — vm-web"
    assert "node-1" not in browser.body_text()
    assert console_errors(browser) == []
    assert lab.placement() == before


@pytest.mark.slow
@needs_browser
def test_a_forged_cross_site_action_is_refused(lab, server, browser, tmp_path):
    cookie, csrf = login(server)
    # a plan made properly, then runs attempted without, or with another, CSRF token
    code, _ = http("POST", server.base + "/plan", {"op": "migrate", "target": "web2",
                                                   "dst": "node-3", "csrf": csrf}, cookie)
    assert code == 303
    _, plans = http("GET", server.base + "/plans", cookie=cookie)
    job = max(int(j) for j in re.findall(r'href="/job/(\d+)"', plans))
    for data in ({"job": job}, {"job": job, "csrf": "x" * 43}):
        code, page = http("POST", server.base + "/run", data, cookie)
        assert code == 403 and "CSRF" in page
    code, _ = http("POST", server.base + "/run", {"job": job, "csrf": csrf}, cookie,
                   headers={"Origin": "http://evil.example"})
    assert code == 403
    # the browser: a page of another site posting to vm-web while the user is logged in
    browser.get(server.url.replace(server.url.split("token=")[1], server.token))
    assert browser.title.startswith("Cluster")
    (tmp_path / "evil.html").write_text(
        f'<!DOCTYPE html><title>evil</title><form method="post" action="{server.base}/run">'
        f'<input name="job" value="{job}"><input name="csrf" value="guess">'
        '<button id="go">win a prize</button></form>')
    handler = lambda *a, **k: httpserver.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path), **k)
    evil = httpserver.ThreadingHTTPServer(("localhost", 0), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://localhost:{evil.server_address[1]}/evil.html")
        browser.click(browser.find("#go"))
        browser.wait_for(lambda: browser.title != "evil", what="the forged post's answer")
        assert "Refused" in browser.body_text() or browser.title == "Log in — vm-web"
    finally:
        evil.shutdown()
    _, page = http("GET", f"{server.base}/job/{job}", cookie=cookie)
    assert "Confirm:" in page, "the forged run started the plan"
    assert lab.placement()["web2"] == "node-2"
    browser.log()                       # the refusals are 403s the console reports: not ours


@pytest.mark.slow
@needs_browser
def test_keyboard_only_and_a_phone_screen(lab, server, browser):
    browser.get(server.url.replace(server.url.split("token=")[1], server.token))
    wait_title(browser, "Cluster")
    guest = next(v for v, h in sorted(lab.placement().items()) if h == "node-3")
    browser.get(f"{server.base}/action?op=suspend&target={guest}")
    wait_title(browser, f"suspend {guest}")
    # Tab through the page to the form's button, Enter: the plan is shown, nothing runs
    for _ in range(20):
        browser.keys("\ue004")
        if browser.script("return document.activeElement.textContent") == "Make the plan":
            break
    else:
        raise AssertionError("the form's button is not reachable with Tab")
    browser.keys("\ue007")
    wait_title(browser, f"Confirm: suspend {guest}")
    assert lab.placement()[guest] == "node-3"
    # a phone: nothing wider than the screen, every host still there
    browser.cmd("POST", "/window/rect", {"width": 390, "height": 844})
    try:
        for path in ("/", "/plans", "/history"):
            browser.get(server.base + path)
            wide = browser.script("return document.documentElement.scrollWidth > "
                                  "document.documentElement.clientWidth")
            assert not wide, f"{path} is wider than a phone's screen"
        browser.get(server.base + "/")
        assert len(browser.find_all("section.host")) == len(lab.scenario["hosts"])
    finally:
        browser.cmd("POST", "/window/rect", {"width": 1280, "height": 1000})
    assert console_errors(browser) == []


@pytest.mark.slow
@needs_browser
def test_a_hostile_guest_name_renders_as_text(tmp_path, browser):
    xml = tmp_path / "hostile.xml"
    xml.write_text(EXAMPLE.read_text().replace("web1", "&lt;script&gt;alert(1)&lt;/script&gt;"))
    s = Server(tmp_path, "--input", str(xml), "--read-only")
    try:
        browser.get(s.url)
        assert browser.title.startswith("Cluster")
        assert HOSTILE in browser.text(browser.find("ul.problems"))
        assert browser.script("return document.scripts.length") == 1
        with pytest.raises(webdriver.WebDriverError, match="no such alert"):
            browser.cmd("GET", "/alert/text")
        assert "migrate" not in browser.body_text(), "actions offered in read-only mode"
        code, _ = http("GET", s.base + "/action?op=migrate&target=web2",
                       cookie=login(s)[0])
        assert code == 403
        assert console_errors(browser) == []
    finally:
        s.stop()


# ---------------------------------------------------------------- the plans of the actions (fast)

@pytest.fixture(scope="module")
def example_snapshot():
    from vmtools.snapshot import make_sources, take_snapshot
    return take_snapshot(make_sources("ganglia", dict(
        gmetad=[], cluster=[], gmond=[], inputs=[], example="lab", timeout=5.0,
        recover=False, stale_after=60.0)))


def test_the_actions_are_checked_plans_of_one_operation(example_snapshot):
    from vmtools.errors import OperationFailed
    from vmtools.rules.check import check_plan
    from vmtools.rules.constraints import Constraints
    from vmtools.web.actions import PlanSettings, build_plan
    snap = example_snapshot
    where = {v.name: v.host for v in snap.vms}
    other = next(h.name for h in snap.hosts if h.name != where["web1"])
    plan = build_plan(snap, PlanSettings(), "migrate", "web1", other)
    assert [(a.op, a.vm, a.src, a.dst) for a in plan.actions] == \
        [("migrate", "web1", where["web1"], other)]
    check_plan(plan, Constraints([]))
    with pytest.raises(OperationFailed, match="runs there already"):
        build_plan(snap, PlanSettings(), "migrate", "web1", where["web1"])
    # the operator's rules are obeyed: a ban on the destination refuses the move
    ban = {"format": "vmtools.constraints", "version": "1.0",
           "rules": [{"rule": "ban", "vms": ["web1"], "hosts": [other]}]}
    with pytest.raises(OperationFailed, match="ban"):
        build_plan(snap, PlanSettings(constraints=ban), "migrate", "web1", other)
    plan = build_plan(snap, PlanSettings(), "suspend", "web1")
    assert [(a.op, a.vm) for a in plan.actions] == [("suspend", "web1")]
    host = where["web1"]
    plan = build_plan(snap, PlanSettings(time_limit=10), "evacuate", host)
    assert {a.vm for a in plan.actions} == {v for v, h in where.items() if h == host}
    assert all(a.dst != host for a in plan.actions)
    with pytest.raises(OperationFailed, match="runs guests"):
        build_plan(snap, PlanSettings(), "power-off", host)
    with pytest.raises(OperationFailed, match="standby"):
        build_plan(snap, PlanSettings(), "power-on", host)


def test_switching_a_host_off_and_on_are_checked_power_actions(example_snapshot):
    from dataclasses import replace
    from vmtools.web.actions import PlanSettings, build_plan
    empty = example_snapshot.hosts[0].name
    snap = replace(example_snapshot, vms=[v for v in example_snapshot.vms if v.host != empty])
    plan = build_plan(snap, PlanSettings(), "power-off", empty)
    assert [(a.op, a.host) for a in plan.actions] == [("power-off", empty)]
    gone = replace(snap, hosts=[h for h in snap.hosts if h.name != empty])
    standby = {empty: {"cpu": 8.0, "mem_mib": 16384, "cluster": ""}}
    plan = build_plan(gone, PlanSettings(standby=lambda _snap: standby), "power-on", empty)
    assert [(a.op, a.host) for a in plan.actions] == [("power-on", empty)]
    assert next(h for h in plan.origin.hosts if h.name == empty).state == "standby"


def test_history_comes_from_the_archived_runs(example_snapshot, tmp_path):
    from dataclasses import replace
    from vmtools.model import dumps
    from vmtools.web.history import host_series, list_runs, run_documents
    host = example_snapshot.hosts[0].name
    for i, created in enumerate(("2026-12-01T10:00:00Z", "2026-12-01T10:10:00Z")):
        d = tmp_path / f"20261201T10{i}000Z"
        d.mkdir()
        snap = replace(example_snapshot, created=created)
        if i:      # a guest less on the host the second time
            gone = next(v.name for v in snap.vms if v.host == host)
            snap = replace(snap, vms=[v for v in snap.vms if v.name != gone])
        (d / "snapshot.json").write_text(dumps(snap.to_dict()))
    (tmp_path / "20261201T102000Z").mkdir()
    (tmp_path / "20261201T102000Z" / "snapshot.json").write_text("{not json")
    names, series = host_series(str(tmp_path), host)
    assert host in names and len(series) == 2
    assert series[0]["guests"] == series[1]["guests"] + 1
    assert series[0]["mem"] > series[1]["mem"]
    page = pages.history_page(host, names, series, "c")
    assert page.count("<polyline") == 2 and "2026-12-01T10:10:00Z" in page
    assert [r["name"] for r in list_runs(str(tmp_path))][0] == "20261201T102000Z"
    assert run_documents(str(tmp_path), "../etc") is None


@pytest.mark.slow
def test_under_tls_the_url_is_https_and_the_cookie_secure(tmp_path):
    import ssl
    cert, key = tmp_path / "web.pem", tmp_path / "web.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    s = Server(tmp_path, "--example", "lab", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert s.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(cert))

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None
        opener = urllib.request.build_opener(NoRedirect, urllib.request.HTTPSHandler(
            context=ctx))
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(s.url, timeout=30)
        assert answer.value.code == 303
        cookie = answer.value.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # plain HTTP on the TLS port gets no page
        with pytest.raises((urllib.error.URLError, ConnectionError, HTTPException)):
            urllib.request.urlopen(s.base.replace("https:", "http:") + "/", timeout=10)
    finally:
        s.stop()


@pytest.mark.slow
def test_the_source_comes_from_the_settings_too(tmp_path):
    config = tmp_path / "vmtools.toml"
    config.write_text('[vm-web]\nexample = "hotspot"\nread-only = true\n')
    s = Server(tmp_path, env=dict(os.environ, VMTOOLS_CONFIG=str(config)))
    try:
        cookie, _ = login(s)
        code, page = http("GET", s.base + "/", cookie=cookie)
        assert code == 200 and "example:hotspot" in page and "HOT (cpu)" in page
        assert "/action?" not in page                       # read-only from the file too
    finally:
        s.stop()


def test_replay_pages_and_the_guests_history_through_the_server(example_snapshot, tmp_path):
    """The aiohttp application itself (aiohttp's test server on loopback): vm-replay's pages
    listed and served sandboxed, nothing else of the directory; vm-plan's samples charted."""
    import asyncio
    from aiohttp.test_utils import TestClient, TestServer
    from vmtools.state import PlanMemory, State, write_state
    from vmtools.web.app import REPLAY_CSP, Config, make_app
    replays = tmp_path / "replays"
    replays.mkdir()
    (replays / "week.html").write_text("<!DOCTYPE html><title>replay</title><script>1</script>")
    (replays / "notes.txt").write_text("secret")
    state_dir = tmp_path / "plan-state"
    state_dir.mkdir()
    host = example_snapshot.hosts[0].name
    guest = next(v.name for v in example_snapshot.vms if v.host == host)
    write_state(str(state_dir), State(plan=PlanMemory(
        placement={guest: host}, samples={guest: [[1796600000.0, 0.25], [1796600060.0, 0.5]]})))

    def refuse(plan, progress):
        raise AssertionError("nothing runs in this test")
    cfg = Config(take=lambda: example_snapshot, execute=refuse, gate=Gate("t" * 40),
                 replay_dir=str(replays), plan_state_dir=str(state_dir), read_only=True)

    async def scenario():
        async with TestClient(TestServer(make_app(cfg))) as client:
            resp = await client.get("/replays", allow_redirects=False)
            assert resp.status == 303 and resp.headers["Location"] == "/login"
            resp = await client.post("/login", data={"token": "t" * 40},
                                     allow_redirects=False)
            assert resp.status == 303
            page = await (await client.get("/replays")).text()
            assert "week.html" in page and "notes.txt" not in page
            resp = await client.get("/replays/week.html")
            assert resp.status == 200 and resp.headers["Content-Security-Policy"] == REPLAY_CSP
            assert "sandbox" in REPLAY_CSP
            for bad in ("/replays/notes.txt", "/replays/..%2Fplan-state%2Fvmtools.state"):
                assert (await client.get(bad)).status == 404, bad
            resp = await client.get(f"/history?host={host}")
            page = await resp.text()
            assert resp.status == 200 and f"{guest}: CPU used, 2 samples" in page
            assert page.count("<polyline") == 1
            resp = await client.get("/")
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
            assert "/action?" not in await resp.text()
    asyncio.run(scenario())


@pytest.mark.slow
def test_the_cluster_from_prometheus(tmp_path_factory):
    """--prometheus: the same pages from the lab's Prometheus (vm-snapshot's own source)."""
    from vmtools.lab.prometheus import prometheus_missing
    if prometheus_missing():
        pytest.skip("prometheus missing")
    from vmtools.lab.run import Lab
    with Lab("steady", workdir=tmp_path_factory.mktemp("lab"), interval=1.0,
             monitoring="prometheus", ssh=False) as lab:
        truth = lab.wait_for_truth()
        tmp = tmp_path_factory.mktemp("web")
        s = Server(tmp, "--prometheus", lab.prometheus.url, "--read-only", env=lab.env())
        try:
            cookie, _ = login(s)
            code, page = http("GET", s.base + "/", cookie=cookie)
            assert code == 200 and "prometheus" in page.lower()
            for h in truth["hosts"]:
                section = page.split(f'id="host-{h["name"]}"')[1].split("</section>")[0]
                shown = set(re.findall(r'<span class="guest">([^<]+)</span>', section))
                assert shown == {v["name"] for v in truth["vms"] if v["host"] == h["name"]}
        finally:
            s.stop()


def test_the_confirmation_shows_what_changes(example_snapshot):
    from vmtools.web.actions import Job, PlanSettings, build_plan
    where = {v.name: v.host for v in example_snapshot.vms}
    src = where["db1"]
    dst = next(h.name for h in example_snapshot.hosts if h.name != src)
    plan = build_plan(example_snapshot, PlanSettings(), "migrate", "db1", dst)
    page = pages.confirm_page(Job(1, plan, "migrate db1"), "c")
    n_src = sum(1 for h in where.values() if h == src)
    n_dst = sum(1 for h in where.values() if h == dst)
    assert f"<td>{src}</td><td>{n_src} → {n_src - 1}</td>" in page
    assert f"<td>{dst}</td><td>{n_dst} → {n_dst + 1}</td>" in page


def test_a_host_switched_off_from_the_page_is_standby_for_vm_plan(example_snapshot, tmp_path):
    from dataclasses import replace
    from vmtools.state import read_state
    from vmtools.status import standby_hosts
    from vmtools.web.actions import PlanSettings, build_plan, record_power
    empty = example_snapshot.hosts[0].name
    snap = replace(example_snapshot, vms=[v for v in example_snapshot.vms if v.host != empty])
    off = build_plan(snap, PlanSettings(), "power-off", empty)
    assert record_power(str(tmp_path), off, {"actions": [{"id": 1, "outcome": "failed"}]}) == []
    assert standby_hosts(str(tmp_path)) == {}
    assert record_power(str(tmp_path), off, {"actions": [{"id": 1, "outcome": "done"}]},
                        now=1000.0) == [empty]
    assert standby_hosts(str(tmp_path))[empty]["mem_mib"] == snap.hosts[0].mem_mib
    gone = replace(snap, hosts=[h for h in snap.hosts if h.name != empty])
    on = build_plan(gone, PlanSettings(standby=lambda _snap: standby_hosts(str(tmp_path))),
                    "power-on", empty)
    record_power(str(tmp_path), on, {"actions": [{"id": 1, "outcome": "done"}]}, now=2000.0)
    power = read_state(str(tmp_path)).power
    assert empty not in power.standby and power.waking[empty]["since"] == 2000.0


@pytest.mark.slow           # waits on purpose while the lock is held
def test_a_host_switched_off_while_vm_plan_runs_is_not_lost(example_snapshot, tmp_path):
    # vm-plan (cron) reads the state, plans, writes it back; the page records a host it
    # switched off meanwhile. Without one lock on the state, vm-plan's write drops the record
    # and the host looks vanished instead of standby.
    from dataclasses import replace
    from vmtools.model import dumps
    from vmtools.state import read_state, state_lock
    from vmtools.status import standby_hosts
    from vmtools.web.actions import PlanSettings, build_plan, record_power
    empty = example_snapshot.hosts[0].name
    snap = replace(example_snapshot, vms=[v for v in example_snapshot.vms if v.host != empty])
    off = build_plan(snap, PlanSettings(), "power-off", empty)
    state_dir = str(tmp_path)
    recorded: list = []
    with state_lock(state_dir):          # as a vm-plan run holds it for its whole run
        page = threading.Thread(target=lambda: recorded.append(record_power(
            state_dir, off, {"actions": [{"id": 1, "outcome": "done"}]})))
        page.start()
        page.join(1.0)
        assert page.is_alive() and not recorded, "the page waits for the run"
        cron = subprocess.Popen([script("vm-plan"), "--state", state_dir, "-q"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert cron.poll() is None, "a second run waits too"
    gone = replace(snap, hosts=[h for h in snap.hosts if h.name != empty])   # it is off
    out, err = cron.communicate(dumps(gone.to_dict()), timeout=120)
    page.join(30)
    assert cron.returncode == 0, err
    assert recorded == [[empty]]
    # whichever wrote last, both records stand: the run's memory and the page's standby host
    state = read_state(state_dir)
    assert state.plan.hosts and empty in standby_hosts(state_dir)


POWER = {
    "name": "web-power", "description": "two hosts, one empty, IPMI",
    "hosts": {"node-1": {"cpus": 8, "mem_mib": 17408, "migration": "xl-ssh"},
              "node-2": {"cpus": 8, "mem_mib": 17408, "migration": "xl-ssh"}},
    "guests": {"web1": {"host": "node-1", "mem_mib": 1024, "load": 0.2}},
    "load": []}


def run_action(server: Server, cookie: str, csrf: str, op: str, target: str,
               timeout: float = 120, dst: str = "") -> dict:
    """An action as the page posts it: the plan, then its confirmation; the job's end."""
    code, page = http("POST", server.base + "/plan", {"op": op, "target": target, "dst": dst,
                                                      "csrf": csrf}, cookie)
    assert code == 303, page
    _, plans = http("GET", server.base + "/plans", cookie=cookie)
    job = max(int(j) for j in re.findall(r'href="/job/(\d+)"', plans))
    code, _ = http("POST", server.base + "/run", {"job": job, "csrf": csrf}, cookie)
    assert code == 303
    deadline = time.time() + timeout
    while True:
        _, text = http("GET", f"{server.base}/job/{job}.json", cookie=cookie)
        view = __import__("json").loads(text)
        if view["state"] not in ("running", "pending") or time.time() > deadline:
            return view
        time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.sshd
def test_a_host_switched_off_and_on_from_the_page(tmp_path_factory):
    from vmtools.lab import bmc as lab_bmc
    from vmtools.lab import sshd as sshlab
    if lab_bmc.available() is not None or sshlab.available() is not None:
        pytest.skip("needs ipmi_sim, ipmitool, sshd, root")
    from vmtools.lab.run import Lab
    with Lab(POWER, workdir=tmp_path_factory.mktemp("lab"), interval=1.0, power=True,
             boot_seconds=1.0) as lab:
        lab.wait_for_truth()
        tmp = tmp_path_factory.mktemp("web")
        plan_state = tmp / "plan-state"
        plan_state.mkdir()
        args = ["--gmetad", lab.ganglia.gmetad_address, "--state", str(plan_state)]
        apply_args = lab.apply_args()
        for flag in ("--hosts", "--state-dir", "--ipmi-credentials", "--ssh-user",
                     "--ssh-key", "--known-hosts"):
            if flag in apply_args:
                args += [flag, apply_args[apply_args.index(flag) + 1]]
        s = Server(tmp, *args, env=lab.env())
        try:
            cookie, csrf = login(s)
            code, page = http("POST", s.base + "/plan", {"op": "power-off", "target": "node-1",
                                                         "csrf": csrf}, cookie)
            assert code == 409 and "it runs guests" in page      # refused before any plan
            view = run_action(s, cookie, csrf, "power-off", "node-2")
            assert view["state"] == "done", view
            assert lab.state.read()["hosts"]["node-2"]["power"] == "off"

            def standby():
                _, page = http("GET", s.base + "/", cookie=cookie)
                section = page.split('id="host-node-2"')[1].split("</section>")[0]
                return "STANDBY" in section and "op=power-on" in section
            deadline = time.time() + 90
            while not standby():
                assert time.time() < deadline, "node-2 never shown standby"
                time.sleep(1)
            view = run_action(s, cookie, csrf, "power-on", "node-2")
            assert view["state"] == "done", view
            assert lab.state.read()["hosts"]["node-2"]["power"] == "on"
        finally:
            s.stop()


@pytest.mark.slow
def test_a_migration_through_a_xapi_pool(tmp_path):
    """--xapi: the pool read through its master and the migration run through it (the lab's
    simulated pool, driven by the real XenAPI client)."""
    from vmtools.lab.run import Lab
    scenario = {"name": "web-xapi", "description": "a pool of two",
                "hosts": {f"node-{i}": {"cpus": 8, "mem_mib": 8192, "dom0_mib": 1024}
                          for i in (1, 2)},
                "guests": {"web1": {"host": "node-1", "mem_mib": 1024, "vcpus": 1,
                                    "load": 0.2},
                           "db1": {"host": "node-2", "mem_mib": 2048, "vcpus": 1,
                                   "load": 0.2}}}
    lab = Lab(scenario, workdir=tmp_path / "lab", platform="xapi").start()
    try:
        lab.wait_for_truth(30)
        plan_state = tmp_path / "plan-state"
        s = Server(tmp_path, *lab.xapi_args(), "--hosts", str(lab.hosts_file),
                   "--state-dir", str(lab.state_dir), "--state", str(plan_state),
                   env=lab.env())
        try:
            cookie, csrf = login(s)
            _, page = http("GET", s.base + "/", cookie=cookie)
            assert '<span class="guest">web1</span>' in \
                page.split('id="host-node-1"')[1].split("</section>")[0]
            view = run_action(s, cookie, csrf, "migrate", "web1", dst="node-2")
            assert view["state"] == "done", view
            assert lab.placement()["web1"] == "node-2"

            # node-1, now empty, into maintenance: recorded, and disabled in the pool
            view = run_action(s, cookie, csrf, "maintenance", "node-1")
            assert view["state"] == "done", view
            assert lab.state.read()["hosts"]["node-1"].get("enabled", True) is False
            assert "node-1" in (plan_state / "maintenance.json").read_text()
            _, page = http("GET", s.base + "/", cookie=cookie)
            section = page.split('id="host-node-1"')[1].split("</section>")[0]
            assert "MAINTENANCE" in section and "op=end-maintenance" in section
            # nothing may be migrated there meanwhile
            code, page = http("POST", s.base + "/plan", {"op": "migrate", "target": "web1",
                                                         "dst": "node-1", "csrf": csrf}, cookie)
            assert code == 409, page
            view = run_action(s, cookie, csrf, "end-maintenance", "node-1")
            assert view["state"] == "done", view
            assert lab.state.read()["hosts"]["node-1"].get("enabled", True) is True
            assert "node-1" not in (plan_state / "maintenance.json").read_text()
        finally:
            s.stop()
    finally:
        lab.stop()


# ---------------------------------------------------------------- maintenance (fast)

def test_maintenance_is_kept_beside_vm_plans_state_and_vm_plan_obeys_it(example_snapshot,
                                                                          tmp_path):
    """A host put in maintenance from the page is in DIR/maintenance.json; vm-plan --state
    DIR (vm-rebalance's) then empties it and sends it nothing, until the page ends it."""
    import json
    from vmtools.maintenance import read_maintenance
    from vmtools.model import dumps
    from vmtools.web.actions import PlanSettings, build_plan, record_maintenance
    state = tmp_path / "plan-state"
    state.mkdir()
    settings = PlanSettings(maintenance=lambda _snap: read_maintenance(str(state)),
                            state_dir=str(state))
    plan = build_plan(example_snapshot, settings, "maintenance", "node-1")
    assert {a.src for a in plan.actions} == {"node-1"} and len(plan.actions) == 4
    assert read_maintenance(str(state)) == {}, "recorded before it was confirmed and run"
    lines: list[str] = []
    record_maintenance(str(state), plan, lines.append)
    assert list(read_maintenance(str(state))) == ["node-1"] and "in maintenance" in lines[0]
    doc = json.loads((state / "maintenance.json").read_text())
    assert doc["format"] == "vmtools.constraints"
    assert doc["rules"] == [{"rule": "maintenance", "hosts": ["node-1"]}]
    with pytest.raises(Exception, match="already in maintenance"):
        build_plan(example_snapshot, settings, "maintenance", "node-1")

    # vm-plan --state: guests leave node-1, and nothing goes there, on every run
    snap = tmp_path / "snap.json"
    snap.write_text(dumps(example_snapshot.to_dict()))
    run = subprocess.run([script("vm-plan"), "--state", str(state), "--quiet", str(snap)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert {"rule": "maintenance", "hosts": ["node-1"]} in out["constraints"]
    assert not [g for g, h in out["placement"].items() if h == "node-1"]
    assert all(a.get("dst") != "node-1" for a in out["actions"])
    # a manual migration onto it is refused too
    run = subprocess.run([script("vm-plan"), "--state", str(state), "--migrate",
                          "web2:node-1", str(snap)], capture_output=True, text=True)
    assert run.returncode != 0 and "node-1" in run.stderr and "Traceback" not in run.stderr

    # the end of it: an empty plan; once run, node-1 is no longer in maintenance
    end = build_plan(example_snapshot, settings, "end-maintenance", "node-1")
    assert end.actions == []
    record_maintenance(str(state), end, lines.append)
    assert read_maintenance(str(state)) == {}
    run = subprocess.run([script("vm-plan"), "--state", str(state), "--quiet", str(snap)],
                         capture_output=True, text=True)
    assert run.returncode == 0 and '"maintenance"' not in run.stdout
    with pytest.raises(Exception, match="not in maintenance"):
        build_plan(example_snapshot, settings, "end-maintenance", "node-1")


def test_a_maintenance_document_that_is_not_one_is_refused(tmp_path):
    from vmtools.maintenance import read_maintenance
    (tmp_path / "maintenance.json").write_text(
        '{"format": "vmtools.constraints", "version": "1.0", '
        '"rules": [{"rule": "pin", "vms": ["web1"]}]}')
    with pytest.raises(DataError, match="only maintenance rules"):
        read_maintenance(str(tmp_path))
    (tmp_path / "maintenance.json").write_text("{trunc")
    with pytest.raises(DataError, match="not a maintenance document"):
        read_maintenance(str(tmp_path))


def test_the_page_shows_a_host_in_maintenance_and_offers_its_end(example_snapshot):
    from vmtools.status import build_status
    status = build_status(example_snapshot, None, None)
    text = pages.cluster_page(status, example_snapshot.vms, {}, [], "c", False, (0.9, 0.95),
                              {"node-1": {"since": "2026-12-07T07:00:00Z", "ours": True},
                               "node-2": {"since": "", "ours": False}})
    one = text.split('id="host-node-1"')[1].split("</section>")[0]
    two = text.split('id="host-node-2"')[1].split("</section>")[0]
    three = text.split('id="host-node-3"')[1].split("</section>")[0]
    assert "MAINTENANCE since 2026-12-07T07:00:00Z" in one and "op=end-maintenance" in one
    assert "MAINTENANCE" in two and "op=end-maintenance" not in two    # the pool's own
    assert "op=maintenance" in three and "MAINTENANCE" not in three


def test_only_a_standby_host_offers_to_be_switched_on(example_snapshot, tmp_path):
    """A host vm-plan switched off offers power-on; a host that vanished from monitoring, or
    whose domain's source did not answer, offers no action at all: nothing is known of it
    now (vm-web would refuse the switch-on anyway: it is in no standby record)."""
    from vmtools.status import build_status
    status = build_status(example_snapshot, None, None)
    by_name = {h["name"]: h for h in status["hosts"]}
    by_name["node-1"]["state"] = "standby"
    for name, state in (("node-2", "vanished"), ("node-3", "unanswered")):
        by_name[name].update(state=state, knowledge="unknown", guests=0, frozen={
            "kinds": ["vanished-host" if state == "vanished" else "unavailable-source"],
            "why": f"{name} is not in this snapshot"})
    vms = [v for v in example_snapshot.vms if v.host not in ("node-1", "node-2", "node-3")]
    text = pages.cluster_page(status, vms, {}, [], "c", False, (0.9, 0.95), {})
    section = {n: text.split(f'id="host-{n}"')[1].split("</section>")[0]
               for n in ("node-1", "node-2", "node-3", "node-4")}
    assert "STANDBY" in section["node-1"] and "op=power-on" in section["node-1"]
    for name, tag in (("node-2", "VANISHED"), ("node-3", "UNANSWERED")):
        assert tag in section[name] and "FROZEN" in section[name]
        assert "op=" not in section[name] and "history" in section[name]
    assert "op=evacuate" in section["node-4"]


def test_vm_web_takes_vm_snapshots_source_options(tmp_path):
    """One way to name the sources: every source option of vm-snapshot (but --at) is
    vm-web's, with the same words; what vm-web cannot do is refused on one line."""
    import typer.main
    from typer.testing import CliRunner
    from vmtools.cli.vm_snapshot import app as snapshot_app
    from vmtools.cli.vm_web import app as web_app

    def options(app):
        cmd = typer.main.get_command(app)
        return {p.opts[0]: p.help for p in cmd.params if p.opts[0].startswith("--")}
    snap, web = options(snapshot_app), options(web_app)
    source = {o for o in snap if o.split("-")[2] in ("gmetad", "cluster", "gmond", "input",
                                                     "example", "prometheus", "samples",
                                                     "timeout", "recover", "stale", "xapi",
                                                     "deadline")}
    assert len(source) == 23, sorted(source)
    for o in source:
        assert web.get(o) == snap[o], o
    assert "--at" not in web
    for args, says in ((["--xapi", "https://a", "--xapi", "https://b"], "--read-only"),
                       (["--input", "-"], "stdin"),
                       (["--prometheus", "http://127.0.0.1:1", "--prometheus-user", "u"],
                        "--prometheus-password-file"),
                       (["--example", "lab", "--deadline", "0"], "--deadline")):
        r = CliRunner().invoke(web_app, [*args, "--token-file", str(tmp_path / "t")])
        assert r.exit_code == 2 and says in r.output, (args, r.output)
        assert r.output.count("\n") == 1 and "Traceback" not in r.output
        assert not (tmp_path / "t").exists(), "a token file made for a refused command line"


def test_vm_apply_options_reach_vm_web_through_the_settings_file(tmp_path, monkeypatch):
    """[vm-web] keys are vm-web's options: vm-apply's run options too (checked as vm-apply
    checks them, one line, exit 2), and the example settings file is one vm-web takes."""
    config = tmp_path / "vmtools.toml"
    env = dict(os.environ, VMTOOLS_CONFIG=str(config), VMTOOLS_STATE_DIR=str(tmp_path))
    for key, says in (("parallel = 0", "--parallel must be at least 1"),
                      ("migration-timeout = 0", "--migration-timeout 0: must be positive"),
                      ("power-off-timeout = -1", "--power-off-timeout must be positive"),
                      ('shutdown-command = "halt"',
                       "'--shutdown-command': Value error, 'halt' is not one of")):
        config.write_text(f'[vm-web]\nexample = "lab"\n{key}\n')
        r = subprocess.run([script("vm-web"), "--token-file", str(tmp_path / "t")],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 2 and says in r.stderr, (key, r.stderr)
        assert r.stdout == "" and r.stderr.count("\n") == 1
        assert not (tmp_path / "t").exists()
    import typer.main
    from vmtools.cli._settings import load_config, settable
    from vmtools.cli.vm_web import app
    example = Path(__file__).resolve().parent.parent / "contrib" / "vmtools.toml"
    monkeypatch.setenv("VMTOOLS_CONFIG", str(example))
    got = load_config("vm-web", list(settable(typer.main.get_command(app))))
    assert got["migration-timeout"] == 600 and got["parallel"] == 2     # [common] too
    # declared once, by vm-apply: the same type, default and help (vm-apply's --timeout is
    # vm-web's --migration-timeout)
    from vmtools.cli.vm_apply import app as apply_app
    from vmtools.cli.vm_web import APPLY_OPTIONS
    web = {p.name: p for p in typer.main.get_command(app).params}
    theirs = {p.name: p for p in typer.main.get_command(apply_app).params}
    assert len(APPLY_OPTIONS) == 20
    for name, source in APPLY_OPTIONS.items():
        a, b = web[name], theirs[source]
        assert (a.help, a.default, a.type_descriptor.annotation) == \
            (b.help, b.default, b.type_descriptor.annotation), name
        assert a.opts == ["--" + name.replace("_", "-")] or a.opts == b.opts, name


def test_vm_status_shows_the_hosts_in_maintenance(example_snapshot, tmp_path):
    """What the page put in maintenance, vm-status says too (table and JSON)."""
    import json
    from vmtools.maintenance import set_maintenance
    from vmtools.model import dumps
    snap = tmp_path / "snap.json"
    snap.write_text(dumps(example_snapshot.to_dict()))
    state = tmp_path / "plan-state"
    state.mkdir()
    set_maintenance(str(state), "node-3", True, now=1796621840.0)
    run = subprocess.run([script("vm-status"), "--state", str(state), "--runs", "", "-f",
                          "json", str(snap)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    hosts = {h["name"]: h for h in json.loads(run.stdout)["hosts"]}
    assert hosts["node-3"]["maintenance"] == {"since": "2026-12-07T05:37:20Z",
                                              "by": "vmtools"}
    assert hosts["node-2"]["maintenance"] is None
    run = subprocess.run([script("vm-status"), "--state", str(state), "--runs", "",
                          str(snap)], capture_output=True, text=True)
    line = next(ln for ln in run.stdout.splitlines() if ln.lstrip().startswith("node-3"))
    assert "online, maintenance" in line, run.stdout


def test_history_reads_each_domain_of_a_run_over_several(example_snapshot, tmp_path):
    from dataclasses import replace
    from vmtools.model import dumps
    from vmtools.web.history import host_series
    first, second = example_snapshot.hosts[0].name, example_snapshot.hosts[1].name
    d = tmp_path / "20261201T100000Z"
    for name, host in (("east", first), ("west", second)):
        (d / name).mkdir(parents=True)
        snap = replace(example_snapshot, created="2026-12-01T10:00:00Z",
                       hosts=[h for h in example_snapshot.hosts if h.name == host],
                       vms=[v for v in example_snapshot.vms if v.host == host])
        (d / name / "snapshot.json").write_text(dumps(snap.to_dict()))
    (d / ".hidden").mkdir()
    (d / ".hidden" / "snapshot.json").write_text(dumps(example_snapshot.to_dict()))
    names, series = host_series(str(tmp_path), second)
    assert names == sorted([first, second])
    assert len(series) == 1 and series[0]["guests"] == sum(
        1 for v in example_snapshot.vms if v.host == second)
    # the run's page: each domain's line and plan under its name
    from vmtools.lab.handmade import plan_of
    from vmtools.model import Snapshot
    from vmtools.web.history import run_documents
    east = Snapshot.from_dict(json.loads((d / "east" / "snapshot.json").read_text()), "s")
    guest = east.vms[0].name
    (d / "east" / "plan.json").write_text(dumps(plan_of(east, [(guest, first)]).to_dict()))
    (d / "result.json").write_text(json.dumps({"exit": 1, "domains": {
        "east": {"exit": 0, "plan": {"migrations": 1}, "outcomes": {"done": 1}},
        "west": {"exit": 69, "failed_step": "snapshot"}}}))
    docs = run_documents(str(tmp_path), d.name)
    assert [(x["name"], x["what"], x["plan"] is not None) for x in docs["domains"]] == [
        ("east", "1 of 1 migration done", True),
        ("west", "vm-snapshot failed (exit 69)", False)]
    html = pages.run_page(d.name, docs["result"], docs["plan"], docs["report"], "c",
                          docs["domains"])
    assert "1 of 2 domains failed (west: vm-snapshot failed (exit 69))" in html
    assert "<h2>east: Plan</h2>" in html and guest in html


@pytest.mark.parametrize("rules, where", [
    ('{"format": "vmtools.constraints", "version": "1.0", "rules": [{"rule": "nosuch"}]}',
     "rules[0]: unknown rule 'nosuch'"),
    ('{"format": "vmtools.plan", "version": "1.0"}', "vmtools.constraints"),
])
def test_a_constraints_file_that_is_not_valid_is_refused_at_start(tmp_path, rules, where):
    """vm-web(1): 65 when the constraints cannot be used. It only read the JSON, served, and
    every action then failed on the rules, page after page."""
    from tests.conftest import run
    path = tmp_path / "rules.json"
    path.write_text(rules)
    proc = run("vm-web", "--example", "lab", "--runs", "", "--state-dir", str(tmp_path),
               "--port", "0", "--constraints", str(path), timeout=60)
    assert proc.returncode == 65 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith(f"vm-web: error: {path}: ") and where in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "web-token").exists()      # nothing made for a refused start


def test_the_url_to_open_names_the_machine_when_listening_on_every_address():
    """--listen 0.0.0.0 printed https://0.0.0.0:8470/login?...: no browser elsewhere opens it."""
    import socket

    from vmtools.web.serve import url_host
    assert url_host("0.0.0.0") == url_host("::") == socket.getfqdn()
    assert url_host("127.0.0.1") == "127.0.0.1" and url_host("::1") == "[::1]"
    assert url_host("10.0.0.5") == "10.0.0.5"


def test_a_replay_directory_that_is_not_one_is_refused_at_start(tmp_path):
    """It was accepted silently, and the page's replay links then led nowhere."""
    from tests.conftest import run
    proc = run("vm-web", "--example", "lab", "--runs", "", "--state-dir", str(tmp_path),
               "--port", "0", "--replay-dir", str(tmp_path / "nope"), timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"vm-web: error: --replay-dir {tmp_path / 'nope'}: no such directory\n"
    assert not (tmp_path / "web-token").exists()
