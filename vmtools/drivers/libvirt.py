"""The ``libvirt-ssh`` transport: libvirt's ``virsh`` over SSH on the source host, for plain
Xen run by libvirt's libxl driver and, by the same token, KVM.

Why ``virsh`` over SSH rather than libvirt's Python binding: the binding
(``libvirt-python``) must be compiled against libvirt's headers on the machine vmtools runs
on, and would open its own ``xen+ssh://`` connections with libvirt's SSH handling rather than
vmtools' (known_hosts policy, keys, never a password). ``virsh migrate --live --p2p`` run on
the source is the same call (``virDomainMigrateToURI3`` with ``VIR_MIGRATE_LIVE |
VIR_MIGRATE_PEER2PEER``): the source's libvirtd opens the connection to the destination's,
so only the source needs to be reached, exactly as ``xl migrate`` does.

- ``virsh uri`` (asked once per host) tells the hypervisor: ``xen:///system`` (libxl) or
  ``qemu:///system`` (KVM); the destination URI is ``xen+ssh://DST/system`` or
  ``qemu+ssh://DST/system``;
- ``virsh list`` (its table: Id, Name, State) tells what a host runs, Domain-0 left out; a
  guest shown ``paused`` is taken as a migration arriving (libvirt shows the arriving guest
  paused under its own name): it is listed under vmtools' in-flight name ``<vm>--incoming``,
  so vm-apply never starts a second move of it and waits for it to settle;
- ``virsh migrate --live --p2p DOM URI``: exit 0 is success; ``error: ...`` on stderr with a
  non-zero exit is a refusal (the guest stays, libvirt resumes it at the source); a timeout
  or a dropped SSH connection is uncertain (vm-apply asks both hosts);
- the guest lifecycle, on domains libvirt defines (persistent): ``virsh managedsave DOM``
  (suspend: libvirtd saves the memory in its own directory on that host, the domain stays
  defined, shut off), ``virsh start DOM`` (resume from the managed save, which libvirt then
  removes; or create: boot a defined, shut-off domain; the plan's configuration path is not
  read, libvirt's XML definition is), ``virsh snapshot-create-as DOM NAME`` (checkpoint, NAME
  the image's file name). libvirt keeps these images itself (the transport's
  ``keeps_images``): a plan's image path only names them, ``has_image`` asks ``virsh
  dominfo`` / ``snapshot-list``, and nothing is removed after a resume. A managed save lives
  on the host that made it: a guest resumes where it was suspended.
"""

from __future__ import annotations

import re

from vmtools.drivers.base import MigrationRefused, MigrationUncertain, checkpoint_name
from vmtools.drivers.ssh import SshDriver
from vmtools.errors import Unavailable
from vmtools.xen import DOM0_NAMES, INCOMING_SUFFIX

URI_SCHEMES = {"xen": "xen", "qemu": "qemu"}


class LibvirtDriver(SshDriver):
    transport = "libvirt-ssh"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tool = "virsh"
        self.transport = "libvirt-ssh"
        self._scheme: str | None = None

    # ---- the guest lifecycle: libvirt keeps the images (the registry's keeps_images)
    def suspend_guest(self, vm: str, image: str, timeout: float) -> None:
        self._toolstack(["virsh", "managedsave", vm], timeout, "managedsave")

    def checkpoint_guest(self, vm: str, image: str, timeout: float) -> None:
        self._toolstack(["virsh", "snapshot-create-as", vm, checkpoint_name(image)], timeout,
                        "snapshot-create-as")

    def resume_guest(self, vm: str, image: str, timeout: float) -> None:
        self._toolstack(["virsh", "start", vm], timeout, "start")

    def create_guest(self, vm: str, config: str, timeout: float) -> None:
        self._toolstack(["virsh", "start", vm], timeout, "start")

    def has_image(self, op: str, vm: str, path: str) -> bool:
        """From libvirtd on this host: a suspend's (or a resume's) image is the domain's
        managed save (``virsh dominfo``: shut off, ``Managed save: yes``); a create needs the
        domain defined and shut off without one; a checkpoint's is its snapshot named
        :func:`~vmtools.drivers.base.checkpoint_name` (``virsh snapshot-list --name``)."""
        argv = (["virsh", "snapshot-list", vm, "--name"] if op == "checkpoint"
                else ["virsh", "dominfo", vm])
        try:
            rc, out, err = self.run(argv, self.connect_timeout)
        except TimeoutError:
            raise Unavailable(f"{self.endpoint.name}: {' '.join(argv[:2])} did not answer "
                              f"within {self.connect_timeout:g}s") from None
        if rc != 0:
            if "failed to get domain" in err:
                return False                       # not defined on this host
            last = (err.strip().splitlines() or [f"exit status {rc}"])[-1]
            raise Unavailable(f"{self.endpoint.name}: {' '.join(argv[:2])} failed: {last}")
        if op == "checkpoint":
            return checkpoint_name(path) in {ln.strip() for ln in out.splitlines()}
        info = {k.strip(): v.strip() for k, _, v in
                (ln.partition(":") for ln in out.splitlines()) if v}
        saved = info.get("Managed save") == "yes"
        return info.get("State") == "shut off" and saved == (op != "create")

    def _ask(self, argv: list[str]) -> str:
        try:
            rc, out, err = self.run(argv, self.connect_timeout)
        except TimeoutError:
            raise Unavailable(f"{self.endpoint.name}: {' '.join(argv)} did not answer within "
                              f"{self.connect_timeout:g}s") from None
        if rc != 0:
            last = (err.strip().splitlines() or [f"exit status {rc}"])[-1]
            raise Unavailable(f"{self.endpoint.name}: {' '.join(argv[:2])} failed: {last}")
        return out

    def scheme(self) -> str:
        """``xen`` or ``qemu``: the hypervisor the host's libvirtd drives."""
        if self._scheme is None:
            uri = self._ask(["virsh", "uri"]).strip()
            m = re.fullmatch(r"([a-z]+)(?:\+[a-z]+)?://[^\s]*", uri)
            if not m or m.group(1) not in URI_SCHEMES:
                raise Unavailable(f"{self.endpoint.name}: virsh uri answered {uri[:60]!r}, "
                                  "neither a Xen (xen:///system) nor a KVM (qemu:///system) "
                                  "connection")
            self._scheme = URI_SCHEMES[m.group(1)]
        return self._scheme

    def list_guests(self) -> set[str]:
        out = self._ask(["virsh", "list"])
        names: set[str] = set()
        for line in out.splitlines():
            fields = line.split()
            # " 3    web1       running" (Id, Name, State; the state may be two words)
            if len(fields) < 3 or not (fields[0].isdigit() or fields[0] == "-"):
                continue
            name, state = fields[1], " ".join(fields[2:])
            if name in DOM0_NAMES:
                continue
            names.add(name + INCOMING_SUFFIX if state == "paused" else name)
        return names

    def migrate(self, vm: str, dst_address: str, timeout: float) -> None:
        uri = f"{self.scheme()}+ssh://{dst_address}/system"
        try:
            rc, _out, err = self.run(["virsh", "migrate", "--live", "--p2p", vm, uri], timeout)
        except TimeoutError:
            raise MigrationUncertain(f"virsh migrate did not end within {timeout:g}s (the "
                                     "migration may still be running)") from None
        if rc == 0:
            return
        if rc == -1:
            raise MigrationUncertain(f"the SSH connection to {self.endpoint.name} dropped "
                                     "during virsh migrate")
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        message = next((ln for ln in lines if ln.startswith("error:") and
                        "Failed to" not in ln[:20]), lines[-1] if lines else f"exit {rc}")
        raise MigrationRefused(f"virsh migrate exited {rc}: {message}")


DRIVER = LibvirtDriver
