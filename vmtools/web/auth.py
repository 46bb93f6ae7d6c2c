"""vm-web's safety: the login token file, one-time logins, sessions and CSRF tokens.

The token file holds one secret (created 0600 when missing; refused when others may read it or
it belongs to someone else). Whoever knows it logs in. On start vm-web also makes a one-time
login code, printed in the URL of its first line of output (as Jupyter does): it opens one
session and is spent. A session is a random id in a cookie (HttpOnly, SameSite=Strict, Secure
under TLS) that expires ``lifetime`` seconds after login; each carries its own CSRF token,
which every action form sends back.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from vmtools.errors import DataError
from vmtools.inputs import check_private

COOKIE = "vmweb_session"
TOKEN_BYTES = 32
MAX_SESSIONS = 1000


def read_or_create_token(path: str) -> str:
    """The login token in ``path``, created (0600, a random secret) when the file is missing.
    UsageError (exit 2) when others may read or change it, or it is not root's or its
    reader's (:func:`vmtools.inputs.check_private`); DataError when it holds no token."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise DataError(f"cannot create the login token file: {exc.strerror}", path) from None
    else:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_urlsafe(TOKEN_BYTES) + "\n")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise DataError(f"cannot read the login token file: {exc.strerror}", path) from None
    with os.fdopen(fd, "rb") as fh:
        check_private(path, "login token file", os.fstat(fh.fileno()))
        raw = fh.read(4096)
    token = raw.decode("ascii", "replace").strip().splitlines()[0] if raw.strip() else ""
    if len(token) < 16:
        raise DataError("the login token file holds no token of 16 characters or more", path)
    return token


@dataclass
class Session:
    sid: str
    csrf: str
    expires: float


@dataclass
class Gate:
    """Who may in: the token, the one-time codes not yet spent, the open sessions."""

    token: str
    lifetime: float = 3600.0
    one_time: set[str] = field(default_factory=set)
    sessions: dict[str, Session] = field(default_factory=dict)
    clock: object = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new_one_time(self) -> str:
        code = secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            self.one_time.add(code)
        return code

    def login(self, offered: str) -> Session | None:
        """A new session for the token or an unspent one-time code (spent now), else None."""
        if not offered or len(offered) > 200:
            return None
        with self._lock:
            spent = next((c for c in self.one_time if hmac.compare_digest(c, offered)), None)
            if spent is not None:
                self.one_time.discard(spent)
            elif not hmac.compare_digest(self.token, offered):
                return None
            self._expire()
            if len(self.sessions) >= MAX_SESSIONS:     # the oldest makes room
                oldest = min(self.sessions.values(), key=lambda s: s.expires)
                del self.sessions[oldest.sid]
            s = Session(secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES),
                        self.clock() + self.lifetime)
            self.sessions[s.sid] = s
            return s

    def session(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            self._expire()
            return self.sessions.get(sid)

    def logout(self, sid: str) -> None:
        with self._lock:
            self.sessions.pop(sid, None)

    def _expire(self) -> None:
        now = self.clock()
        for sid in [k for k, s in self.sessions.items() if s.expires <= now]:
            del self.sessions[sid]


def csrf_ok(session: Session, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(session.csrf, offered)
