"""The crash trials' independent reader of Iceberg tables: opens every table of the warehouse's
SQL catalog (`<warehouse>/iceberg.db`) with pyiceberg (not rsdbt) and prints, as JSON, each
table's row count and a digest of its rows (order-independent)."""

import hashlib
import json
import os
import sys

from pyiceberg.catalog.sql import SqlCatalog

root = os.path.abspath(sys.argv[1])
out = {}
db = os.path.join(root, "iceberg.db")
if os.path.exists(db):
    catalog = SqlCatalog("rsdbt", uri=f"sqlite:///{db}", warehouse=f"file://{root}")
    for namespace in catalog.list_namespaces():
        for ident in catalog.list_tables(namespace):
            name = "iceberg:" + ".".join(ident)
            try:
                rows = catalog.load_table(ident).scan().to_arrow().to_pylist()
                lines = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
                digest = hashlib.md5("\n".join(lines).encode()).hexdigest()
                out[name] = {"rows": len(rows), "digest": digest}
            except Exception as e:  # an unreadable table is what the trials look for
                out[name] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out, sort_keys=True), flush=True)
