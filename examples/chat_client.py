"""The demo's chat in a terminal: ``python -m examples.chat_client [URL]``.

Connects to the demo (``make demo``) with python-socketio's ``Client``, says which worker
serves it, sends each line typed, and prints every message of the room with the worker
that sent it, so that two clients (or a client and a browser tab) show messages crossing
workers. End with Ctrl-D or Ctrl-C.
"""
from __future__ import annotations

import argparse
import sys

import socketio


def main(argv: list[str] | None = None) -> int:
    """Run the client until standard input ends; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m examples.chat_client",
                                     description="a terminal client for the sticky-cluster chat demo")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:5000",
                        help="the demo's address (default: %(default)s)")
    args = parser.parse_args(argv)
    client = socketio.Client()
    mine: dict[str, int] = {}

    @client.on("joined")
    def joined(message: dict) -> None:
        mine["worker"] = message["worker"]
        print(f"served by worker {message['worker']}; type a line to say it", flush=True)

    @client.on("said")
    def said(message: dict) -> None:
        whose = "yours" if message["worker"] == mine.get("worker") else "another worker"
        print(f"[worker {message['worker']}, {whose}] {message['text']}", flush=True)

    try:
        client.connect(args.url, wait_timeout=10)
    except socketio.exceptions.ConnectionError as exc:
        print(f"cannot connect to {args.url}: {exc or 'no answer'} (is `make demo` running?)",
              file=sys.stderr)
        return 1
    try:
        for line in sys.stdin:
            if line.strip():
                client.emit("say", line.strip())
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
