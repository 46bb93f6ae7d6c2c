"""vm-gmetric without its command line: what a Domain-0 publishes to Ganglia.

:mod:`.build` turns toolstack readings into the contract's metrics (pure);
:mod:`.publish` samples, builds, encodes and sends, cycle after cycle. What it reads on the
Domain-0 lives in :mod:`vmtools.dom0`.
"""
