"""Stand-ins for a Domain-0's Xen commands (``xm``, ``xl``, libvirt's ``virsh``,
``xenstore-read``, ``xenstore-ls``) and its ``poweroff``/``shutdown``.

Xen cannot run here, so the lab puts small scripts with those names first on PATH (locally,
or for SSH sessions through sshd's ``SetEnv``). Each script runs :func:`main`, which answers
as the real command does -- same output, same messages, same exit codes -- from the shared
simulated cluster (:mod:`vmtools.lab.cluster`):

- ``migrate`` and ``migrate-receive`` go to :mod:`vmtools.lab.migrate` (moves guests);
- ``save``, ``restore`` and ``create`` go to :mod:`vmtools.lab.lifecycle` (images, new guests);
- ``virsh`` (uri, list, domstate, migrate --live --p2p) goes to :mod:`vmtools.lab.virsh`;
- ``poweroff`` and ``shutdown -h`` switch the simulated host off (:mod:`vmtools.lab.power`);
- everything else (``list``, ``info``, ``xenstore-*``) goes to :mod:`vmtools.lab.toolstack`.

Environment: ``VMTOOLS_LAB_STATE`` (the state file), ``VMTOOLS_LAB_HOST`` (which simulated
Domain-0 this is).
"""

from __future__ import annotations

import os
import sys

from vmtools.lab.cluster import ClusterState

TOOLS = ("xm", "xl", "virsh", "xenstore-read", "xenstore-ls", "poweroff", "shutdown")


def install_standins(bin_dir: str | os.PathLike, state_path: str | os.PathLike | None = None,
                     host: str | None = None, python: str | None = None) -> os.PathLike:
    """Write the stand-in scripts into ``bin_dir``. With ``state_path``/``host`` they are
    baked into the scripts (for SSH, where the environment is sshd's); otherwise the
    scripts read ``VMTOOLS_LAB_STATE``/``VMTOOLS_LAB_HOST``."""
    import shlex            # here, not at the top: every stand-in call imports this module
    import stat
    from pathlib import Path
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    env = ""
    if state_path is not None:
        env += f"VMTOOLS_LAB_STATE={shlex.quote(str(state_path))}; export VMTOOLS_LAB_STATE\n"
    if host is not None:
        env += f"VMTOOLS_LAB_HOST={shlex.quote(host)}; export VMTOOLS_LAB_HOST\n"
    # The stand-ins need only the standard library and this package: run them without the
    # site machinery (-S), which costs an editable install about 60 ms a call, and find the
    # package through PYTHONPATH instead. A real xl answers in a few ms; so should its double.
    # Byte-code is cached even where PYTHONDONTWRITEBYTECODE is set (compiling the lab's
    # modules on every call tripled a call's CPU time).
    env += "unset PYTHONDONTWRITEBYTECODE\n"
    root = shlex.quote(str(Path(__file__).resolve().parent.parent.parent))
    env += f"PYTHONPATH={root}${{PYTHONPATH:+:$PYTHONPATH}}; export PYTHONPATH\n"
    for tool in TOOLS:
        script = bin_dir / tool
        # -c, not -m: runpy would import importlib.util and contextlib on every call
        script.write_text(f"#!/bin/sh\n{env}exec {shlex.quote(python)} -S -c "
                          f"'import sys, vmtools.lab.standin as s; sys.exit(s.main())' "
                          f"{tool} \"$@\"\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in TOOLS:
        print(f"usage: python -m vmtools.lab.standin {{{'|'.join(TOOLS)}}} ARGS...",
              file=sys.stderr)
        return 2
    tool, args = argv[0], argv[1:]
    host = os.environ.get("VMTOOLS_LAB_HOST", "")
    try:
        state = ClusterState.from_env()
    except RuntimeError as exc:
        print(f"{tool}: {exc}", file=sys.stderr)
        return 1
    sub = args[0] if args else ""
    if tool in ("poweroff", "shutdown"):
        from vmtools.lab import power
        return power.poweroff(tool, args)
    if tool == "virsh":
        from vmtools.lab import virsh
        rc, out, err = virsh.run(args, host, state)
    elif tool in ("xm", "xl") and sub in ("migrate", "migrate-receive"):
        from vmtools.lab import migrate
        rc, out, err = migrate.run(tool, args, host, state)
    elif tool in ("xm", "xl") and sub in ("save", "restore", "create"):
        from vmtools.lab import lifecycle
        rc, out, err = lifecycle.run(tool, args, host, state)
    else:
        from vmtools.lab import toolstack
        rc, out, err = toolstack.run(tool, args, host, state)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main())
