"""NBD: the protocol side of the bridge that serves NVMe namespaces as NBD exports."""
