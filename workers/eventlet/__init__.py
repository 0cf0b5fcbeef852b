"""The eventlet runtime: ``socketio.Server(async_mode="eventlet")`` and Flask-SocketIO apps.

``eventlet.wsgi`` serves the handed-over sockets from a stand-in listener fed by the
master's channel (:mod:`.link`), with the worker's HTTP limits (:mod:`.http`), hand-backs
under ``--route sid`` (:mod:`.protocol`) and bounded websockets (:mod:`.websocket`);
:mod:`.runtime` boots it. Importing this package imports nothing; its modules import
eventlet (the absolute ``import eventlet`` is the library, never this package).
"""
