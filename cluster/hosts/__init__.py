"""Several hosts: the directory of hosts and the forwarder process.

When masters on several hosts share sessions (``--host-id``, ``--advertise``, ``--peers``),
each sid names its host (:mod:`cluster.protocol.sids`). A request whose sid names another
host is relayed there by the *forwarder*, a process of its own that the master forks
beside its workers (:mod:`cluster.hosts.forwarder`): the master only hands it the client
socket, as it would to a worker, and never relays a byte itself.

The modules the master imports (:mod:`~cluster.hosts.addresses`,
:mod:`~cluster.hosts.forwarder_config`, :mod:`~cluster.hosts.lease`) are standard library
only; the broker client and asyncio are imported by the forwarder's modules in the
forked child, and by the lease's short child process (``python -m cluster.hosts.lease``).
"""
