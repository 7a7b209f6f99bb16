"""An independent reader for the crash trials: opens every Delta table under a warehouse (a
folder, or an s3://bucket/prefix on the S3 emulator named by $S3_ENDPOINT) with the `deltalake`
package (delta-rs' Python binding, not rsdbt) and prints, as JSON, each table's row count and a
digest of its rows (order-independent)."""

import json
import os
import sys

from deltalake import DeltaTable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digest import describe  # noqa: E402

root = sys.argv[1]


def local_tables():
    for dirpath, dirnames, _ in os.walk(root):
        if "_delta_log" in dirnames:
            yield os.path.relpath(dirpath, root), dirpath, None
            dirnames[:] = []


def s3_tables():
    from pyarrow import fs

    endpoint = os.environ["S3_ENDPOINT"]
    s3 = fs.S3FileSystem(
        endpoint_override=endpoint.split("://", 1)[1],
        scheme=endpoint.split("://", 1)[0],
        access_key="test",
        secret_key="test",
        region="us-east-1",
    )
    options = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    base = root[len("s3://"):].rstrip("/")
    found = set()
    for info in s3.get_file_info(fs.FileSelector(base, recursive=True)):
        if "/_delta_log/" in info.path + "/":
            found.add(info.path.split("/_delta_log", 1)[0])
    for table in sorted(found):
        yield os.path.relpath(table, base), "s3://" + table, options


out = {}
for name, uri, options in (s3_tables() if root.startswith("s3://") else local_tables()):
    out[name] = describe(
        lambda: DeltaTable(uri, storage_options=options).to_pyarrow_table().to_pylist()
    )
print(json.dumps(out, sort_keys=True), flush=True)
# delta-rs' runtime can abort while the interpreter tears down; the answer is out already.
os._exit(0)
