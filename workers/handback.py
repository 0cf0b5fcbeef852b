"""Whether a request that arrives on a connection this worker holds is another worker's.

The master routes a connection by its first request and hands it over for good; a
browser then reuses it (keep-alive) for requests of other sessions, from other tabs,
that other workers own. Before serving each request, a worker reads its request line
and asks :func:`owner_elsewhere`: a request for another worker's sid is handed back to
the master with the bytes read so far, and the master passes both to the owner, which
serves them as if it had read them itself (:data:`cluster.protocol.frames.Kind.RESUME`).

The first request of a resumed connection is always served where it lands, so a
hand-back never loops: when no live worker owns the sid, the master sends the
connection back to the worker that gave it, which answers as for any unknown sid.

Pure: bytes in, a decision out. Runtime-neutral: every worker runtime uses it.
"""
from __future__ import annotations

from cluster.protocol.sids import TAG_LIMIT, request_sid, tag_of


def owner_elsewhere(request_line: bytes, own_tag: int) -> int | None:
    """The tag of the worker that owns the sid of ``request_line``, when it is not us.

    None when the request names no sid, a sid that is not one of the cluster's, or one
    of this worker's (tag ``own_tag``): this worker serves it.
    """
    sid = request_sid(request_line)
    if sid is None:
        return None
    tag = tag_of(sid)
    if tag is None or tag == own_tag % TAG_LIMIT:
        return None
    return tag
