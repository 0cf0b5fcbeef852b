"""The threading runtime: ``socketio.Server(async_mode="threading")``, Flask-SocketIO in
threading mode, or a ``socketio.WSGIApp`` over such a Server.

A poller thread reads the handed-over sockets (:mod:`.server`, with the HTTP parsing of
:mod:`.http`) and a pool of ``--threads`` threads (:mod:`.pool`) runs the requests; the
master's channel is read by a thread of its own (:mod:`.link`); a websocket is read by
the request thread that waits for its messages, with the worker's limits (:mod:`.websocket`),
and background tasks run on reused threads (:mod:`.tasks`); :mod:`.runtime` boots it. Importing this package imports nothing (the absolute ``import threading`` is the
standard library, never this package).
"""
