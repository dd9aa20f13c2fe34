"""Interop tier: the Linux kernel as NVMe/TCP peer in a qemu guest (see README.md)."""
