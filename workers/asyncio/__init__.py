"""The asyncio runtime: ``AsyncServer``, ASGI (FastAPI, Starlette) and aiohttp apps.

One event loop reads the master's channel (:mod:`.link`) and serves each handed-over
socket with uvicorn's protocol (:mod:`.asgi_server`) or aiohttp's
(:mod:`.aiohttp_server`), behind the worker's limits (:mod:`.guard`, which finds the
requests with :mod:`.request_bounds` and the websocket frames with
:mod:`.websocket_frames`) and, under ``--route sid``, the hand-back (:mod:`.protocol`,
:mod:`.peer`); :mod:`.runtime` boots it. Importing this package imports nothing (the
absolute ``import asyncio`` is the standard library, never this package).
"""
