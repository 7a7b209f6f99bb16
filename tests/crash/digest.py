"""What the crash trials' readers say of one table: its row count and an order-independent
digest of its rows, or why it could not be read."""

import hashlib
import json


def describe(read_rows):
    """`read_rows()` returns the table's rows as dicts; an exception is reported, not raised
    (an unreadable table is what the trials look for)."""
    try:
        rows = read_rows()
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    lines = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return {"rows": len(rows), "digest": hashlib.md5("\n".join(lines).encode()).hexdigest()}
