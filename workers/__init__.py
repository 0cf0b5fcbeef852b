"""The worker side of sticky-cluster: what runs in each forked worker process.

This package imports nothing from the master (``cluster/``): what the two sides share
is in ``cluster/protocol/`` (the messages, sids, the spec a worker boots from, broker URLs).
The master reaches a runtime only by its class's path in
:data:`cluster.protocol.spec.RUNTIMES`, and imports it only in the forked child. A runtime
is a :class:`workers.boot.Runtime`: ``Class(spec, sock).serve()`` boots a worker (and never
returns), ``Class.check(target)`` returns an error line or None. Which runtime a target
needs is decided by :mod:`workers.loader`; the master learns it from
``python -m workers auto TARGET`` before it forks.

Layout: the runtime-neutral core at this package's top (the boot sequence in
:mod:`workers.boot`, the loader, the link's inbox, the managers, the hand-back decision,
the limits, the access log, forwarding, the drain's spread) and one subpackage per runtime
(:mod:`workers.eventlet`, :mod:`workers.gevent`, :mod:`workers.asyncio`,
:mod:`workers.threading`) that plugs its server into it. A module of the top imports no
runtime package.
"""
