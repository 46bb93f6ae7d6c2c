"""The simulated Xen cluster lab: shared cluster state, simulated xend, xm/xl stand-ins.

Only the hypervisor is simulated; everything between the commands is the real protocol.
"""
