"""Prometheus in and out: vm-gmetric's exporter (:mod:`.exposition`), the metric names of the
contract (:mod:`.names`), the textfile-collector files every command can write
(:mod:`.textfile`), and the Prometheus source of vm-snapshot (:mod:`.query`, :mod:`.profiles`,
:mod:`.source`). ``prometheus_client`` is imported here and nowhere else."""
