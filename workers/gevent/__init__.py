"""The gevent runtime: ``socketio.Server(async_mode="gevent")`` and Flask-SocketIO apps.

``gevent.pywsgi`` serves each handed-over socket in a greenlet, fed by the master's
channel (:mod:`.link`), with the worker's HTTP limits (:mod:`.http`), hand-backs under
``--route sid`` (:mod:`.protocol`) and simple-websocket's websockets bounded
(:mod:`workers.simple_websocket_limits`); :mod:`.runtime` boots it. Importing this package
imports nothing; import its modules after gevent's monkey-patching (the absolute ``import
gevent`` is the library, never this package).
"""
