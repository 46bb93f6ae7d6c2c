"""What vm-gmetric reads on a Domain-0: xl/xm, xenstore, sysfs. Pure parsers plus runners."""
