"""The crash trials' independent reader of Iceberg tables: opens every table of the warehouse's
SQL catalog (`<warehouse>/iceberg.db`) with pyiceberg (not rsdbt) and prints, as JSON, each
table's row count and a digest of its rows (order-independent)."""

import json
import os
import sys

from pyiceberg.catalog.sql import SqlCatalog

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digest import describe  # noqa: E402

root = os.path.abspath(sys.argv[1])
out = {}
db = os.path.join(root, "iceberg.db")
if os.path.exists(db):
    catalog = SqlCatalog("rsdbt", uri=f"sqlite:///{db}", warehouse=f"file://{root}")
    for namespace in catalog.list_namespaces():
        for ident in catalog.list_tables(namespace):
            out["iceberg:" + ".".join(ident)] = describe(
                lambda: catalog.load_table(ident).scan().to_arrow().to_pylist()
            )
print(json.dumps(out, sort_keys=True), flush=True)
