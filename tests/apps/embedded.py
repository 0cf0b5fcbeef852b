"""Run a Master from a script; drive it with lines on stdin.

Usage: python -m tests.apps.embedded PORT [REDIS_URL]
Lines: ``reload``, ``scale N``, ``stop`` or ``stop graceful`` (the last two also end the input).
"""
import sys
import threading

from cluster import Master


def main() -> None:
    port = sys.argv[1]
    adapter = sys.argv[2] if len(sys.argv) > 2 else None
    master = Master("tests.apps.chat:sio", workers=2, bind=f"127.0.0.1:{port}", adapter=adapter,
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
