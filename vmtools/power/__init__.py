"""Switching hosts off and on: the mechanisms vm-apply uses for ``power-off``/``power-on``.

- :mod:`vmtools.power.wol`: Wake-on-LAN magic packets (UDP, broadcast or directed);
- :mod:`vmtools.power.ipmi`: a host's BMC through Debian's ``ipmitool -I lanplus``, with
  credentials from a root-only file handed over in ipmitool's environment, never its argv;
- :mod:`vmtools.power.boot`: waiting for a host's transport (xend or sshd) to answer, or to
  stop answering.

The orderly shutdown over SSH lives with the other SSH code, in
:mod:`vmtools.drivers.poweroff` (paramiko stays under ``drivers/``).
"""
