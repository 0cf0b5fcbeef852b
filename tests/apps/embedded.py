"""Run a Master from a script; drive it with lines on stdin.

Usage: python -m tests.apps.embedded PORT [REDIS_URL] [--object]
(``--object``: the Server object itself instead of its ``module:attr`` string.)
Lines: ``reload``, ``scale N``, ``stop`` or ``stop graceful`` (the last two also end the input).
"""
import sys
import threading

from cluster import Master


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg != "--object"]
    port = args[0]
    adapter = args[1] if len(args) > 1 else None
    if "--object" in sys.argv:
        from tests.apps.chat import sio as target
    else:
        target = "tests.apps.chat:sio"
    master = Master(target, workers=2, bind=f"127.0.0.1:{port}", adapter=adapter,
                    graceful_timeout=2)

    def obey_input() -> None:
        for line in sys.stdin:
            command, *args = line.split()
            if command == "reload":
                master.reload()
            elif command == "scale":
                master.scale(int(args[0]))
            elif command == "stop":
                master.stop(graceful=args == ["graceful"])
                return

    threading.Thread(target=obey_input, daemon=True).start()
    master.run()
    print("embedded master returned", flush=True)


if __name__ == "__main__":
    main()
