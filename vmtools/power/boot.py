"""Waiting for a host to come up (its transport answers) or go down (it stops answering).

"Answers" means a TCP connection to the host's xend or sshd is accepted; vm-apply then asks
the transport itself (a guest list) before it sends a guest there.
"""

from __future__ import annotations

import socket
import time
from typing import Callable


def answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """True when ``address:port`` accepts a TCP connection now."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 1.0,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> bool:
    """Call ``check`` until it returns True (→ True) or ``timeout`` seconds pass (→ False).
    ``check`` is always called at least once, and once more at the deadline."""
    deadline = clock() + timeout
    while True:
        if check():
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(interval, left))
