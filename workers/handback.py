"""Whether a request that arrives on a connection this worker holds goes back to the master.

The master routes a connection by its first request and hands it over for good; a
browser then reuses it (keep-alive) for requests of other sessions, from other tabs,
that other workers own, and for the handshakes of new sessions. Before serving each
request, a worker reads its request line and asks :func:`goes_back`:

* a request for another worker's sid (:func:`owner_elsewhere`), of this host or of
  another, is handed back to the master with the bytes read so far, and the master
  passes both to the owner (or to the host that owns it), which serves them as if it
  had read them itself (:data:`cluster.protocol.frames.Kind.RESUME`);
* a later request of a connection that starts a new Engine.IO session
  (:func:`starts_session`: a handshake) is handed back too, when the master places new
  sessions by load (``--balance least-loaded`` or ``random``): the master places it as
  it places a new connection's, on this worker again when it is the best choice. So
  the tabs of one browser spread over the workers even on one kept-alive connection.
  The first request of a connection is never handed back for this: the master placed
  the connection by it.

The first request of a resumed connection is always served where it lands, so a
hand-back never loops: when no live worker owns the sid, the master sends the
connection back to the worker that gave it, which answers as for any unknown sid.

Pure: bytes in, a decision out. Runtime-neutral: every worker runtime uses it.
"""
from __future__ import annotations

from cluster.protocol.sids import owner_of, request_sid


def owner_elsewhere(request_line: bytes, own: int) -> int | None:
    """The owner (:func:`cluster.protocol.sids.owner_of`: host and worker tag) of the sid
    of ``request_line``, when it is not us.

    None when the request names no sid, a sid that is not one of the cluster's, or one
    of this worker's (owner ``own``, :func:`cluster.protocol.sids.owner`): this worker
    serves it.
    """
    sid = request_sid(request_line)
    if sid is None:
        return None
    found = owner_of(sid)
    if found is None or found == own:
        return None
    return found


def starts_session(request_line: bytes) -> bool:
    """Whether ``request_line`` (a whole one) is an Engine.IO handshake: its query has an
    ``EIO=`` parameter and no ``sid=``."""
    end = request_line.find(b"\n")
    if end < 0:
        return False
    parts = request_line[:end].split(b" ")
    if len(parts) != 3:
        return False
    query = parts[1].partition(b"#")[0].partition(b"?")[2]
    params = query.split(b"&")
    return (any(param.startswith(b"EIO=") for param in params)
            and not any(param.startswith(b"sid=") for param in params))


def goes_back(request_line: bytes, own: int, new_sessions: bool) -> bool:
    """Whether the worker of owner number ``own`` (its host and tag) hands the request of
    ``request_line`` back to the master: it names another worker's session, or
    ``new_sessions`` (the master places them, and this is not a connection's first
    request) and it starts one."""
    if owner_elsewhere(request_line, own) is not None:
        return True
    return new_sessions and starts_session(request_line)
