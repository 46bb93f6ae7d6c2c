"""The source options, one set for every command that reads the cluster (vm-snapshot,
vm-status and vm-web): each is a typer annotation here, and :func:`source_settings` turns their values
into :class:`vmtools.snapshot.SourceSettings` for :func:`vmtools.snapshot.sources_from`.
A command takes them all through :func:`with_sources`, so ``--help``, the settings file
(``[vm-snapshot]``, ``[vm-web]``, ``[vm-status]``) and the environment see the same options
with the same words."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Callable, Optional

import typer

from vmtools.ganglia.interpret import DEFAULT_STALE_AFTER
from vmtools.ganglia.names import GMETAD_INTERACTIVE_PORT, GMETAD_XML_PORT, GMOND_PORT
from vmtools.ganglia.sources import DEFAULT_TIMEOUT, EXAMPLES
from vmtools.snapshot import SourceSettings

Gmetad = Annotated[Optional[list[str]], typer.Option(
    "--gmetad", metavar="HOST[:PORT]",
    help=f"Read gmetad's XML port (default port {GMETAD_XML_PORT}; with --cluster, the "
         f"interactive port, default {GMETAD_INTERACTIVE_PORT}). Repeatable: the union is "
         "read and hosts seen twice are problems. Default: localhost when no other source "
         "is given.")]
Cluster = Annotated[Optional[list[str]], typer.Option(
    "--cluster", metavar="NAME",
    help="Ask gmetad's interactive port for this cluster only (path query /NAME), so a "
         "large grid need not be downloaded whole. Repeatable.")]
Gmond = Annotated[Optional[list[str]], typer.Option(
    "--gmond", metavar="HOST[:PORT]",
    help=f"Read a gmond's own TCP port (default port {GMOND_PORT}). Repeatable.")]
Input = Annotated[Optional[list[str]], typer.Option(
    "--input", "-i", metavar="FILE",
    help="Read a saved gmetad or gmond XML dump; - reads stdin. Repeatable.")]
Example = Annotated[Optional[str], typer.Option(
    "--example", metavar="NAME",
    help=f"Read a gmetad dump shipped with vmtools: {', '.join(EXAMPLES)} (a small Xen "
         "lab cluster; the same with one CPU-hot host).")]
Prometheus = Annotated[Optional[list[str]], typer.Option(
    "--prometheus", metavar="URL",
    help="Read a Prometheus server's HTTP API (http[s]://HOST:PORT[/PATH]) through "
         "--prometheus-profile; no credentials in the URL. Repeatable.")]
PrometheusProfile = Annotated[str, typer.Option(
    "--prometheus-profile", metavar="NAME|FILE",
    help="How hosts and guests are named and measured there: vmtools (vm-gmetric's "
         "exporter), xen-exporter (MikeDombo/xen-exporter), or a profile file "
         "(vmtools-formats(5), PROMETHEUS PROFILES).")]
PrometheusUser = Annotated[Optional[str], typer.Option(
    "--prometheus-user", metavar="NAME",
    help="Basic auth user; the password is read from --prometheus-password-file.")]
PrometheusPasswordFile = Annotated[Optional[str], typer.Option(
    "--prometheus-password-file", metavar="FILE",
    help="File whose first line is the basic auth password (not readable by others).")]
PrometheusTokenFile = Annotated[Optional[str], typer.Option(
    "--prometheus-token-file", metavar="FILE",
    help="File whose first line is a bearer token (not readable by others).")]
PrometheusCaFile = Annotated[Optional[str], typer.Option(
    "--prometheus-ca-file", metavar="FILE",
    help="CA certificates (PEM) that sign the https:// server's certificate (default: "
         "the system's).")]
SamplesWindow = Annotated[float, typer.Option(
    "--samples-window", metavar="MINUTES",
    help="With --prometheus: carry each guest's CPU samples of the last MINUTES (a range "
         "query) for vm-plan --demand; 0 carries none.")]
SamplesStep = Annotated[float, typer.Option(
    "--samples-step", metavar="SECONDS",
    help="With --prometheus: seconds between two samples of --samples-window.")]
Timeout = Annotated[float, typer.Option(
    "--timeout", metavar="SECONDS",
    help="Ganglia: connect timeout and timeout of every read from gmetad or gmond; a whole "
         "answer must arrive within 30 times this. Prometheus: the deadline of the whole "
         "read, every query included.")]
Recover = Annotated[bool, typer.Option(
    "--recover",
    help="On malformed XML, keep every cluster and host that parses and list the dropped "
         "ones as problems, instead of failing with exit 65.")]
StaleAfter = Annotated[float, typer.Option(
    "--stale-after", metavar="SECONDS",
    help="A cluster whose gmond was last heard this long before gmetad's answer is "
         "stale (a problem).")]
Xapi = Annotated[Optional[list[str]], typer.Option(
    "--xapi", metavar="URL",
    help="Read a XCP-ng / XenServer pool through its master's XAPI (https://MASTER): "
         "hosts, guests, anti-affinity VM groups, CPU and network from /rrd_updates; its "
         "hosts' migration domain is the pool. The user and password come from "
         "$VMTOOLS_XAPI_USER and $VMTOOLS_XAPI_PASSWORD, else --xapi-credentials; never "
         "from the command line. Repeatable (one per pool, the same credentials).")]
XapiCredentials = Annotated[Optional[str], typer.Option(
    "--xapi-credentials", metavar="FILE",
    help="XAPI user and password (TOML username, password; owned by root or you, mode "
         "600). Default: the environment, else /etc/vmtools/xapi.toml.")]
XapiCa = Annotated[Optional[str], typer.Option(
    "--xapi-ca", metavar="FILE",
    help="Verify the pool's TLS certificates against this CA bundle (PEM) instead of the "
         "system's.")]
XapiFingerprint = Annotated[Optional[list[str]], typer.Option(
    "--xapi-fingerprint", metavar="SHA256",
    help="Accept only a certificate with this SHA-256 fingerprint (openssl x509 "
         "-fingerprint -sha256; one per host of the pool when each has its own). "
         "Repeatable.")]
XapiInsecure = Annotated[bool, typer.Option(
    "--xapi-insecure",
    help="Do NOT verify the pool's TLS certificate (anyone on the path can read the "
         "password): for a lab only; warned on every run.")]
XapiWindow = Annotated[float, typer.Option(
    "--xapi-window", metavar="SECONDS",
    help="With --xapi: average each guest's CPU and network over this many seconds of "
         "XAPI's RRDs.")]
Deadline = Annotated[Optional[float], typer.Option(
    "--deadline", metavar="SECONDS",
    help="Read every source at once and end the whole read within SECONDS: a source "
         "(a gmetad, gmond, pool or Prometheus server) not done by then, or not answering, "
         "is an unavailable-source problem and its hosts are left out, while the others "
         "are read (exit 69 only when none answers). Default: each source's own "
         "timeouts.")]

# The source options in --help's order: name -> (annotation, default). --deadline is
# take_snapshot's, not a SourceSettings field.
OPTIONS: dict[str, tuple[Any, Any]] = dict(
    gmetad=(Gmetad, None), cluster=(Cluster, None), gmond=(Gmond, None),
    input_=(Input, None), example=(Example, None), prometheus=(Prometheus, None),
    prometheus_profile=(PrometheusProfile, "vmtools"),
    prometheus_user=(PrometheusUser, None),
    prometheus_password_file=(PrometheusPasswordFile, None),
    prometheus_token_file=(PrometheusTokenFile, None),
    prometheus_ca_file=(PrometheusCaFile, None), samples_window=(SamplesWindow, 120.0),
    samples_step=(SamplesStep, 60.0), timeout=(Timeout, DEFAULT_TIMEOUT),
    recover=(Recover, False), stale_after=(StaleAfter, DEFAULT_STALE_AFTER),
    xapi=(Xapi, None), xapi_credentials=(XapiCredentials, None), xapi_ca=(XapiCa, None),
    xapi_fingerprint=(XapiFingerprint, None), xapi_insecure=(XapiInsecure, False),
    xapi_window=(XapiWindow, 60.0), deadline=(Deadline, None))
DEFAULTS: dict[str, Any] = {name: default for name, (_, default) in OPTIONS.items()
                            if name != "deadline"}


def with_sources(after: str | None = None, omit: tuple[str, ...] = (), **defaults: Any
                 ) -> Callable[[Callable], Callable]:
    """Give ``func(..., **given)`` the source options (:data:`OPTIONS`, but ``omit``; with
    ``defaults`` where a command's differ) after its own parameter ``after`` (first when
    None): typer builds them from its signature, and the command finds their values in
    ``given`` by the same names. The one declaration of the options every reading command
    shares."""
    def decorate(func: Callable) -> Callable:
        kw = inspect.Parameter.KEYWORD_ONLY
        own = [p.replace(kind=kw) for p in
               inspect.signature(func, eval_str=True).parameters.values()
               if p.kind != p.VAR_KEYWORD]
        ours = [inspect.Parameter(name, kw, annotation=annotation,
                                  default=defaults.get(name, default))
                for name, (annotation, default) in OPTIONS.items() if name not in omit]
        cut = 0 if after is None else [p.name for p in own].index(after) + 1
        func.__signature__ = inspect.Signature(own[:cut] + ours + own[cut:])  # type: ignore
        return func
    return decorate


def source_settings(values: dict[str, Any], at: str | None = None) -> SourceSettings:
    """The :class:`SourceSettings` of a command's source options (``values``: its
    parameters, by the names of :data:`DEFAULTS`; other keys are ignored)."""
    kw = {name: values[name] for name in DEFAULTS if name in values}
    kw["input"] = kw.pop("input_", None)
    for name in ("gmetad", "cluster", "gmond", "input", "prometheus", "xapi",
                 "xapi_fingerprint"):
        kw[name] = list(kw.get(name) or [])
    return SourceSettings(at=at, **kw)


__all__ = ["DEFAULTS", "OPTIONS", "source_settings", "with_sources"]
