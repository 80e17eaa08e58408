"""What every venue's docs-shaped frame test (tests/venues/<venue>/test_docs_frames.py)
shares.

Every frame in those tests has the field names, nesting and value types of the example in
the venue's own API documentation (the page is named above each frame); the values are
ours. Frames go through ``Normalizer.normalize`` exactly as the worker calls it (``run``),
routed to their raw subject by the collector's own ``route`` where the venue pushes them
over WebSocket, and every field of each resulting typed message is compared against a
value worked out by hand (whole-struct equality, so a field added, dropped or changed
fails the test). A rejected frame fails the test with its reason.
"""

from __future__ import annotations

import orjson

from normalizer.core import Dead, Normalizer
from streams import schemas, subjects

RECV_NS = 1700000000000000001
RECV = {subjects.H_RECV_NS: str(RECV_NS)}
MS = 1_000_000
Msg = tuple[str, str, schemas.Base]  # (subject, Nats-Msg-Id, typed message)


def run(n: Normalizer, subject: str, body: dict | bytes, raw_seq: int = 1) -> list[Msg]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    out = n.normalize(subject, data, RECV, raw_seq)
    assert not isinstance(out, Dead), f"{subject} rejected: {out.reason}"
    return [(o.subject, o.msg_id, schemas.decode(o.data)) for o in out]
