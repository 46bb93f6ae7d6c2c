"""vm-apply's settings, as the core sees them (the command line maps its flags onto them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from vmtools.drivers.hostmap import HostEntry
from vmtools.power.execute import PowerSettings
from vmtools.errors import OptionError
from vmtools.model import is_safe_path
from vmtools.xen import DEFAULT_IMAGE_DIR
from vmtools.drivers import registry

DEFAULT_STATE_DIR = "/var/lib/vmtools"

# One line of progress for people, on stderr at the command line.
Progress = Callable[[str], None]


def default_state_dir() -> str:
    return os.environ.get("VMTOOLS_STATE_DIR") or DEFAULT_STATE_DIR


@dataclass
class ApplyOptions:
    parallel: int = 2
    per_host: int = 1
    dry_run: bool = False
    offline: bool = False                      # with dry_run: check without asking any host
    force: bool = False
    stop_on_failure: bool = False
    driver: str | None = None                  # one transport for every host
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    ssh: object | None = None                  # vmtools.drivers.ssh.SshOptions
    xapi: object | None = None                 # vmtools.drivers.xapi.XapiSettings
    timeout: float = 600.0                     # client timeout of one migration call
    verify_timeout: float = 600.0              # how long to ask the hosts after an unknown end
    connect_timeout: float = 10.0
    state_dir: str | None = None
    journal: str | None = None
    resume: str | None = None                  # journal of the run to continue
    poll: float = 0.25                         # first interval between two verifications
    lock_dir: str | None = None                # per-host locks (None: vmtools.apply.lock's)
    power: PowerSettings = field(default_factory=PowerSettings)   # power-off / power-on
    image_dir: str = DEFAULT_IMAGE_DIR         # where suspend images live (shared by hosts)

    def validate(self) -> None:
        """:class:`~vmtools.errors.OptionError` naming the first setting out of range."""
        if self.offline and not self.dry_run:
            raise OptionError("offline", "works only with --dry-run (it asks no host)")
        if self.parallel < 1:
            raise OptionError("parallel", "must be at least 1")
        if self.per_host < 1:
            raise OptionError("per_host", "must be at least 1")
        if self.driver is not None and not registry.is_transport(self.driver):
            raise OptionError("driver", f"{self.driver}: expected one of "
                              f"{', '.join(registry.names())}")
        if not is_safe_path(self.image_dir.rstrip("/") or "/"):
            raise OptionError("image_dir", f"{self.image_dir!r}: expected an absolute path of "
                              "letters, digits and '._+-' between slashes, without '..'")
        for name in ("timeout", "verify_timeout", "connect_timeout"):
            if getattr(self, name) <= 0:
                raise OptionError(name, "must be positive")
        for name in ("boot_timeout", "off_timeout"):
            if getattr(self.power, name) <= 0:
                raise OptionError(name, "must be positive")
        if not 1 <= self.power.wol_port <= 65535:
            raise OptionError("wol_port", "must be 1-65535")
        if not 1 <= self.power.ssh_port <= 65535:
            raise OptionError("ssh_port", "must be 1-65535")
