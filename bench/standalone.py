"""Run ``bench.app`` as ONE eventlet process: the baseline the cluster is compared with.

    python -m bench.standalone --bind 127.0.0.1:5077 [--connections 10000] [--backlog 1024]
                               [--cpus 0]

Prints one JSON line ``{"event": "ready", "bind": "HOST:PORT", "pid": N}`` to stdout
once the socket listens (``--bind 127.0.0.1:0`` picks a free port; the line says which).
"""
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

from eventlet import wsgi  # noqa: E402


def raise_nofile():
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def parse_bind(text):
    host, sep, port = text.rpartition(':')
    if not sep or not host:
        raise argparse.ArgumentTypeError('expected HOST:PORT, got %r' % text)
    return host, int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m bench.standalone', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--bind', type=parse_bind, default=('127.0.0.1', 5077),
                        help='HOST:PORT to listen on (default 127.0.0.1:5077)')
    parser.add_argument('--connections', type=int, default=10000,
                        help='size of the green pool = most concurrent connections (default 10000)')
    parser.add_argument('--backlog', type=int, default=1024,
                        help='listen backlog (default 1024; the kernel caps it at somaxconn)')
    parser.add_argument('--cpus', default=None,
                        help='pin to these CPUs, e.g. "0" or "0,1" (os.sched_setaffinity)')
    args = parser.parse_args(argv)

    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(',')})
    nofile = raise_nofile()
    from bench.app import app  # imported after monkey_patch()

    sock = eventlet.listen(args.bind, backlog=args.backlog)
    host, port = sock.getsockname()[:2]
    print(json.dumps({'event': 'ready', 'bind': '%s:%d' % (host, port), 'pid': os.getpid(),
                      'nofile': nofile, 'connections': args.connections,
                      'cpus': sorted(os.sched_getaffinity(0))}), flush=True)
    try:
        wsgi.server(sock, app, log_output=False,
                    custom_pool=eventlet.GreenPool(args.connections))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
