"""vmtools: consolidation and load balancing of Xen guests monitored by Ganglia.

The commands (vm-snapshot, vm-plan, vm-apply, vm-gmetric) live in :mod:`vmtools.cli`;
everything they do is importable from the core modules without typer.
"""

__version__ = "0.1.0"
