"""vm-web's server (aiohttp): the routes, the login gate, the security headers.

Every page but /login and /static/ needs a session; every POST but /login needs the session's
CSRF token (and, when the browser sends one, an Origin that is this server). Reading the
cluster, planning and executing run in threads: the event loop only serves pages.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from aiohttp import web

from vmtools.errors import VmtoolsError
from vmtools.model import Plan, Snapshot
from vmtools.web import pages
from vmtools.web.actions import (OPS, Jobs, PlanSettings, build_plan, record_maintenance,
                                 host_state_dir, record_power)
from vmtools.web.auth import COOKIE, Gate, csrf_ok
from vmtools.web.history import guest_samples, host_series, list_runs, run_documents

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# vm-replay's pages are whole documents with their own inline script: sandboxed (an opaque
# origin: no cookie, no request to vm-web as the user), no network.
REPLAY_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data:; sandbox allow-scripts")
STATIC = {"style.css": "text/css", "app.js": "text/javascript"}
REPLAY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.html")
# typed keys where this aiohttp has them (AppKey since 3.9, RequestKey later)
CFG = web.AppKey("cfg", object)
JOBS = web.AppKey("jobs", object)
_request_key = getattr(web, "RequestKey", None)
SESSION = _request_key("session", object) if _request_key else "session"
FORM = _request_key("form", object) if _request_key else "form"


@dataclass
class Config:
    take: Callable[[], Snapshot]                      # the cluster now (vm-snapshot's sources)
    execute: Callable[[Plan, Callable[[str], None]], dict]   # vm-apply's executor -> report
    gate: Gate
    plan: PlanSettings = field(default_factory=PlanSettings)
    status: Callable[[Snapshot], dict] | None = None  # vm-status's document of a snapshot
    runs_dir: str | None = None
    plan_state_dir: str | None = None                 # vm-plan's --state (guests' samples)
    replay_dir: str | None = None
    read_only: bool = False
    tls: bool = False
    targets: tuple[float, float] = (0.9, 0.95)
    # a XAPI pool's host.disable (True: maintenance) and host.enable (False: its end)
    maintain_host: Callable[[str, bool], str] | None = None


def make_app(cfg: Config) -> web.Application:
    def execute(plan: Plan, progress) -> dict:
        record_maintenance(cfg.plan_state_dir, plan, progress, cfg.maintain_host)
        if not plan.actions:                # a maintenance of an empty host, or its end
            return {"actions": [], "summary": {"actions": 0, "done": 0}}
        report = cfg.execute(plan, progress)
        try:        # what ran stands, recorded or not: a failure here is a line, not a failure
            for host in record_power(cfg.plan_state_dir, plan, report):
                where = host_state_dir(cfg.plan_state_dir, plan, host)
                progress(f"{host}: recorded in vm-plan's state ({where})")
        except VmtoolsError as exc:
            progress(f"warning: vm-plan's state not updated: {exc}")
        return report
    jobs = Jobs(execute)
    app = web.Application(middlewares=[_headers, _gate(cfg)], client_max_size=64 * 1024)
    app[CFG], app[JOBS] = cfg, jobs
    r = app.router
    r.add_get("/login", login_get)
    r.add_post("/login", login_post)
    r.add_post("/logout", logout)
    r.add_get("/static/{name}", static)
    r.add_get("/", cluster)
    r.add_get("/action", action_form)
    r.add_post("/plan", make_plan)
    r.add_post("/run", run_plan)
    r.add_get(r"/job/{id:\d+}", job)
    r.add_get(r"/job/{id:\d+}.json", job_json)
    r.add_get("/plans", plans)
    r.add_get("/run", run_view)
    r.add_get("/history", history)
    r.add_get("/replays", replays)
    r.add_get("/replays/{name}", replay_file)
    return app


# ---------------------------------------------------------------- middlewares

@web.middleware
async def _headers(request: web.Request, handler):
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        resp = exc
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"   # no-referrer makes Origin null
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    if isinstance(resp, web.HTTPException):
        raise resp
    return resp


def _gate(cfg: Config):
    @web.middleware
    async def gate(request: web.Request, handler):
        if request.path == "/login" or request.path.startswith("/static/"):
            return await handler(request)
        session = cfg.gate.session(request.cookies.get(COOKIE))
        if session is None:
            if request.method == "GET":       # refused: to the login page, nothing shown
                raise web.HTTPSeeOther("/login")
            return _html(pages.login_page("Refused: not logged in."), 403)
        request[SESSION] = session
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin != _origin(request):
                return _html(pages.message_page("Refused", "a request from another site",
                                                session.csrf), 403)
            form = await request.post()
            if not csrf_ok(session, form.get("csrf")):
                return _html(pages.message_page("Refused", "the form's CSRF token is missing "
                                                "or wrong; reload the page", session.csrf), 403)
            request[FORM] = form
        return await handler(request)
    return gate


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _cfg(request) -> Config:
    return request.app[CFG]


def _csrf(request) -> str:
    return request[SESSION].csrf


async def _thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# ---------------------------------------------------------------- login

def _start_session(request: web.Request, offered: str) -> web.Response:
    cfg = _cfg(request)
    session = cfg.gate.login(offered)
    if session is None:
        return _html(pages.login_page("That login is wrong, spent or expired."), 403)
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(COOKIE, session.sid, httponly=True, samesite="Strict", secure=cfg.tls,
                    path="/", max_age=int(cfg.gate.lifetime))
    return resp


async def login_get(request: web.Request):
    token = request.query.get("token")
    if token:
        return _start_session(request, token)
    return _html(pages.login_page())


async def login_post(request: web.Request):
    form = await request.post()
    return _start_session(request, str(form.get("token") or ""))


async def logout(request: web.Request):
    _cfg(request).gate.logout(request[SESSION].sid)
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(COOKIE, path="/")
    return resp


async def static(request: web.Request):
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    text = resources.files("vmtools.web").joinpath("static", name).read_text("utf-8")
    return web.Response(text=text, content_type=STATIC[name], charset="utf-8")


# ---------------------------------------------------------------- the cluster

async def cluster(request: web.Request):
    cfg = _cfg(request)
    try:
        snap = await _thread(cfg.take)
        status = await _thread(cfg.status or _plain_status(cfg), snap)
    except VmtoolsError as exc:
        return _html(pages.message_page("Cluster", f"cannot read the cluster: {exc}",
                                        _csrf(request)), 503)
    moving = {}
    for j in request.app[JOBS].running():
        moving.update(j.moving())
    from vmtools.xen import is_in_flight_name
    in_flight = sorted({p.vm for p in snap.problems if p.vm and is_in_flight_name(p.vm)})
    try:
        maintenance = await _thread(_maintenance, cfg, snap)
    except VmtoolsError as exc:
        return _html(pages.message_page("Cluster", f"cannot read the hosts in maintenance: "
                                        f"{exc}", _csrf(request)), 503)
    return _html(pages.cluster_page(status, snap.vms, moving, in_flight, _csrf(request),
                                    cfg.read_only, cfg.targets, maintenance))


def _maintenance(cfg: Config, snap: Snapshot) -> dict[str, dict]:
    """The hosts in maintenance: the platform's (a XAPI pool's disabled hosts) and those
    vm-plan's state records (vm-web's)."""
    out = {h: {"since": "", "ours": False} for r in snap.rules
           if isinstance(r, dict) and r.get("rule") == "maintenance"
           for h in (r.get("hosts") or []) if isinstance(h, str)}
    for h, since in cfg.plan.maintenance(snap).items():
        out[h] = {"since": since, "ours": True}
    return out


def _plain_status(cfg: Config):
    """vm-status's document with no suspended-guests ledger."""
    from vmtools.status import build_status
    return lambda snap: build_status(snap, cfg.runs_dir, cfg.plan_state_dir, *cfg.targets)


def _refuse_read_only(request) -> web.Response | None:
    if _cfg(request).read_only:
        return _html(pages.message_page("Read-only", "vm-web runs --read-only: no action",
                                        _csrf(request)), 403)
    return None


async def action_form(request: web.Request):
    refused = _refuse_read_only(request)
    if refused:
        return refused
    op, target = request.query.get("op", ""), request.query.get("target", "")
    if op not in OPS or not target:
        return _html(pages.message_page("Action", "unknown action", _csrf(request)), 400)
    choices: list[str] = []
    if op in ("migrate", "resume"):
        try:
            snap = await _thread(_cfg(request).take)
        except VmtoolsError as exc:
            return _html(pages.message_page("Action", str(exc), _csrf(request)), 503)
        here = next((v.host for v in snap.vms if v.name == target), None)
        choices = sorted(h.name for h in snap.hosts if h.state == "online" and h.name != here)
    return _html(pages.action_form(op, target, OPS[op], choices, _csrf(request)))


async def make_plan(request: web.Request):
    refused = _refuse_read_only(request)
    if refused:
        return refused
    cfg, form = _cfg(request), request[FORM]
    op, target, dst = str(form.get("op", "")), str(form.get("target", "")), \
        str(form.get("dst", "")) or None
    if op not in OPS or not target:
        return _html(pages.message_page("Plan", "unknown action", _csrf(request)), 400)

    def plan() -> Plan:
        return build_plan(cfg.take(), cfg.plan, op, target, dst)
    try:
        result = await _thread(plan)
    except VmtoolsError as exc:
        return _html(pages.message_page("No plan", str(exc), _csrf(request)), 409)
    job = request.app[JOBS].add(result)
    raise web.HTTPSeeOther(f"/job/{job.id}")


async def run_plan(request: web.Request):
    refused = _refuse_read_only(request)
    if refused:
        return refused
    jobs: Jobs = request.app[JOBS]
    try:
        job = jobs.get(int(str(request[FORM].get("job", ""))))
    except ValueError:
        job = None
    if job is None:
        return _html(pages.message_page("Run", "no such plan", _csrf(request)), 404)
    try:
        jobs.start(job)
    except VmtoolsError as exc:
        return _html(pages.message_page("Run", str(exc), _csrf(request)), 409)
    raise web.HTTPSeeOther(f"/job/{job.id}")


def _job(request):
    job = request.app[JOBS].get(int(request.match_info["id"]))
    if job is None:
        raise web.HTTPNotFound()
    return job


async def job(request: web.Request):
    j = _job(request)
    if j.state == "pending":
        if _cfg(request).read_only:
            return _refuse_read_only(request)
        return _html(pages.confirm_page(j, _csrf(request)))
    return _html(pages.job_page(j.view(), _csrf(request)))


async def job_json(request: web.Request):
    view = _job(request).view()
    return web.json_response({"state": view["state"], "lines": view["lines"],
                              "error": view["error"]})


# ---------------------------------------------------------------- plans, runs, history

async def plans(request: web.Request):
    cfg = _cfg(request)
    jobs = [j.view() for j in sorted(request.app[JOBS].jobs.values(), key=lambda j: -j.id)]
    runs = await _thread(list_runs, cfg.runs_dir)
    return _html(pages.plans_page(jobs, runs, _csrf(request)))


async def run_view(request: web.Request):
    cfg = _cfg(request)
    name = request.query.get("name", "")
    docs = await _thread(run_documents, cfg.runs_dir, name)
    if docs is None:
        raise web.HTTPNotFound()
    return _html(pages.run_page(name, docs["result"], docs["plan"], docs["report"],
                                _csrf(request), docs["domains"]))


async def history(request: web.Request):
    cfg = _cfg(request)
    host = request.query.get("host")
    hosts, series = await _thread(host_series, cfg.runs_dir, host)
    guests, note = {}, None
    if host is not None:
        guests, note = await _thread(guest_samples, cfg.plan_state_dir, host)
        if host not in hosts and not guests:
            host, series = None, []
    return _html(pages.history_page(host, hosts, series, _csrf(request), guests, note))


def _replay_names(replay_dir: str | None) -> list[str]:
    if not replay_dir:
        return []
    try:
        return sorted(p.name for p in Path(replay_dir).iterdir()
                      if REPLAY_NAME.fullmatch(p.name) and p.is_file())
    except OSError:
        return []


async def replays(request: web.Request):
    return _html(pages.replays_page(_replay_names(_cfg(request).replay_dir), _csrf(request)))


async def replay_file(request: web.Request):
    cfg, name = _cfg(request), request.match_info["name"]
    if name not in _replay_names(cfg.replay_dir):
        raise web.HTTPNotFound()
    resp = web.FileResponse(Path(cfg.replay_dir) / name)
    resp.headers["Content-Security-Policy"] = REPLAY_CSP
    resp.content_type = "text/html"
    return resp
