"""Redis stream plumbing shared by every reader and writer, each piece written once:

* :mod:`.entries`: a raw stream entry (id and fields, as any redis-py reply gives them)
  -> :class:`~auren_core.events.Event` or :class:`~auren_core.events.Malformed`;
* :mod:`.backoff`: the reconnect delay policy (redis-py's exponential backoff with jitter);
* :mod:`.lag`: how many entries a reader is behind the stream's newest one.

Importing this package imports neither redis nor anything else heavy; :mod:`.backoff` and
:mod:`.lag` import redis when they are used.
"""

from __future__ import annotations

from .entries import decode_entries, decode_entry, entry_id

__all__ = ["decode_entries", "decode_entry", "entry_id"]
