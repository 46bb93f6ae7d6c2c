"""Start vm-web: check where it listens, bind, print the login URL first, serve until stopped."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import sys
import time
from typing import Callable

from aiohttp import web

from vmtools.errors import DataError, OptionError, Unavailable
from vmtools.web.app import JOBS, Config, make_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    if not cert and not key:
        return None
    if not (cert and key):
        raise OptionError("tls_cert", "and {tls_key} go together", settings=("tls_key",))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise DataError(f"cannot load the TLS certificate and key: {exc}", cert) from None
    return ctx


def check_listen(host: str, ctx: ssl.SSLContext | None) -> None:
    if not is_loopback(host) and ctx is None:
        raise OptionError("listen", f"{host} is beyond loopback: give {{tls_cert}} and "
                          "{tls_key} (a login over plain HTTP can be read on the way)",
                          settings=("tls_cert", "tls_key"))


def url_host(listen: str) -> str:
    """The host part of the URL to open: a wildcard address (0.0.0.0, ::) is no address a
    browser elsewhere can open, so the machine's own name stands for it (the TLS certificate
    names it too)."""
    if listen in ("0.0.0.0", "::", ""):
        import socket
        return socket.getfqdn()
    return f"[{listen}]" if ":" in listen else listen


def serve(cfg: Config, host: str, port: int, ctx: ssl.SSLContext | None,
          announce: Callable[[str], None] = print) -> None:
    """Serve until SIGINT/SIGTERM; ``announce`` gets the one-time login URL once bound."""
    check_listen(host, ctx)
    cfg.tls = ctx is not None

    app = make_app(cfg)

    async def main() -> None:
        runner = web.AppRunner(app, handle_signals=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = url_host(host)
        scheme = "https" if ctx else "http"
        announce(f"{scheme}://{shown}:{bound}/login?token={cfg.gate.new_one_time()}")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, web.GracefulExit):
        pass
    finally:
        # a plan started from the page runs to its end (vm-apply's executor lets running
        # migrations finish on SIGTERM too); the page is gone, the journal has it all
        while app[JOBS].running():
            time.sleep(0.5)
    sys.stdout.flush()
