"""nvmecontrol: a FreeBSD-style NVMe over Fabrics (NVMe/TCP) command suite and userspace target."""

__version__ = "0.1.0"
