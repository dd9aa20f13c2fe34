"""The FreeBSD backend: associations handed to the nvmf(4) kernel host.

``nvlist`` packs and unpacks libnv nvlists, ``ioctl`` holds the request
numbers and argument structures, ``handoff`` builds the nvlists nvmf(4)
expects, ``backend`` drives the ioctls.
"""
