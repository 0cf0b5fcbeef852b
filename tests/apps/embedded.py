"""Run a Master from a script; stop it when a line arrives on stdin.

Usage: python -m tests.apps.embedded PORT [REDIS_URL]
"""
import sys
import threading

from cluster import Master


def main() -> None:
    port = sys.argv[1]
    adapter = sys.argv[2] if len(sys.argv) > 2 else None
    master = Master("tests.apps.chat:sio", workers=2, bind=f"127.0.0.1:{port}", adapter=adapter)

    def stop_on_input() -> None:
        sys.stdin.readline()
        master.stop()

    threading.Thread(target=stop_on_input, daemon=True).start()
    master.run()
    print("embedded master returned", flush=True)


if __name__ == "__main__":
    main()
