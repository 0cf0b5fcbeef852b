"""The worker side of sticky-cluster: what runs in each forked worker process.

This package imports nothing from the master (``cluster/``): what the two sides share
is in ``cluster/protocol/`` (the messages, sids, the spec a worker boots from, broker URLs). The
master reaches a runtime only by its module path in :data:`cluster.protocol.spec.RUNTIMES`, and
imports it only in the forked child. A runtime module provides ``serve(spec, sock)``
(never returns) and ``check(target)`` (returns an error line or None). Which runtime a
target needs is decided by :mod:`workers.loader`; the master learns it from
``python -m workers auto TARGET`` before it forks.

Layout: one subpackage per runtime (:mod:`workers.eventlet`, :mod:`workers.gevent`,
:mod:`workers.asyncio`, :mod:`workers.threading`), each plugging its server into the
runtime-neutral core at this package's top (the loader, the link's inbox, the managers,
the hand-back decision, the limits, the access log, forwarding, the drain's spread).
A module of the top imports no runtime package.
"""
