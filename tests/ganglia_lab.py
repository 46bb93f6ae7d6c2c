"""Test helper: the real gmond + gmetad lab (see :mod:`vmtools.lab.ganglia`)."""

from vmtools.lab.ganglia import GangliaLab, binaries_missing, free_port, read_port

__all__ = ["GangliaLab", "binaries_missing", "free_port", "read_port"]
