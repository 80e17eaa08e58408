"""The fault suite: the full pipeline under steady load while faults are injected.

``python -m tests.faults [--short]`` (``make faults``) runs the Binance emulator (trades +
depth), a real nats-server with a file store in a temp dir, and every worker as a real
subprocess (collector, normalizer, ClickHouse sink on a temp chdb path, order book). One
pipeline serves the whole run; the faults follow one another while the load never stops,
and each fault owns the trades the venue sent from its injection to the next fault's:

* ``kill -9 <worker>`` for collector, normalizer, sink and orderbook (x10 each, x1 short);
* ``nats-server restart`` (SIGTERM, start again on the same port and store);
* ``venue drops connection`` (the emulator closes the socket);
* ``venue stalls connection`` (open socket, nothing sent: stale detection must fire);
* ``insert failures`` (the sink's ``fail_inserts_file`` exists for 60 s, 3 s short).

Accounting, exactly, by trade id (the emulator ids trades per symbol, 1, 2, 3 ...):

* A venue can only be held to what it delivered. The emulator keeps a **ledger per
  WebSocket connection**: the trades it wrote to that socket, in order. A trade the venue
  generated while no collector connection was open (collector dead, reconnecting, stalled)
  was never offered to the pipeline; it is counted in ``unoffered`` and the pipeline must
  have recorded a ``gap`` for that symbol (a ``reconnect`` gap from the collector's
  connection events, or a ``sequence`` gap from the order book seeing the depth chain
  break) - if no gap covers it the row says so.
* **offered** = distinct trades written to some collector connection.
* When a connection ends abnormally (kill -9 of the collector, a drop, a stall), the
  trades written to the socket but not yet read by the collector are gone with the
  process or the socket. Frames reach NATS in connection order, so what the pipeline got
  from a connection is a *prefix* of its ledger: the unstored *tail* of a connection that
  ended is ``in flight`` - classified like ``unoffered`` (needs a gap for that symbol
  recorded after the tail began) and not counted as lost.
* One tail is not the venue's doing, and the table does not hide it: on a NATS reconnect
  the collector (``collectors/binance.py``) ends its venue connection to mark a possible
  gap, and the frames its WebSocket library had already received but the collector had
  not yet read (queued while it waited for the acked barrier during the outage) go with
  that connection. They show as ``in flight`` of the ``nats-server restart`` row, with
  the "disconnected" gap recorded. What the collector *had* published is no longer lost:
  ``RawPublisher`` keeps unconfirmed frames and re-sends those RAW lacks after a
  reconnect (``tests/pipeline/test_faults.py`` kills nats-server -9 mid-burst to prove it).
* **lost** = offered trades not stored that are *not* such a covered tail: a hole before
  the last stored trade of a connection (something the pipeline received and dropped),
  anything on the connection still open at the end, or a tail with no gap recorded.
* **stored** = distinct trade ids in ClickHouse; **duplicated** = rows - distinct, read
  with plain ``count()`` (no FINAL), i.e. what a user's query sees.
* **recovery** = from the fault's end (restart, reconnect allowed, outage over) until a
  trade the venue sent after that moment is visible in ClickHouse; for the order book,
  until ``book.get`` answers with a valid book again. The worst instance is shown.

At the end the load stops, the pipeline drains, and the order book of every symbol must
equal the emulator's true book (so every resync after a gap converged).
"""
