"""A client connection, from accept to the worker it belongs to.

Above :mod:`cluster.pool` (it hands each connection to a worker of the pool), below the
operators' face and the master. A connection goes, top to bottom:

- :mod:`cluster.intake.listeners`, :mod:`cluster.intake.acceptor`: the listening sockets and
  when the loop accepts on them;
- :mod:`cluster.intake.intake`: a new connection's peek (:mod:`cluster.intake.peek`, pure),
  what to do with what it sent (:mod:`cluster.intake.intake_decision`, pure) and the
  connections waiting for more (:mod:`cluster.intake.pending`);
- :mod:`cluster.intake.dispatch`: the worker it goes to (a sid's owner, or a placement:
  :mod:`cluster.intake.placement`, :mod:`cluster.intake.routing`, pure) and the hand-off.
"""
