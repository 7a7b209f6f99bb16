#!/usr/bin/env python3
"""The conformance table of scripts/compat.sh.

Arguments: one `label|rsdbt project dir|dbt project dir` per project (the dbt dir may be
empty). Reads each tool's run_results.json copy, row counts and target/compiled/ files.
"""
import json
import os
import re
import sys

PASS = {"success", "pass", "warn"}


def results(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {r["unique_id"]: (r["status"], (r.get("message") or "").strip()) for r in data["results"]}


def counts(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "COUNT":
                    out[parts[1]] = parts[2].split(".")[0]
    except OSError:
        pass
    return out


def normalize(sql):
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = sql.replace('"', "").replace("`", "").lower()
    return re.sub(r"\s+", " ", sql).strip()


def compiled(project_dir):
    root = os.path.join(project_dir, "target", "compiled")
    out = {}
    for base, _, files in os.walk(root):
        for name in files:
            path = os.path.join(base, name)
            with open(path, errors="replace") as f:
                out[os.path.relpath(path, root)] = normalize(f.read())
    return out


def main(rows):
    table = []
    details = []
    for row in rows:
        label, rs_dir, dbt_dir = (row.split("|") + [""])[:3]
        rs = results(os.path.join(rs_dir, "compat-rsdbt-run_results.json"))
        rs_passed = {u for u, (s, _) in rs.items() if s in PASS}
        line = {"project": label, "nodes": len(rs), "rsdbt": len(rs_passed)}
        for u, (s, m) in sorted(rs.items()):
            if s not in PASS:
                details.append(f"{label}: rsdbt {s} {u}: {m.splitlines()[0] if m else ''}"[:300])
        if dbt_dir:
            db = results(os.path.join(dbt_dir, "compat-dbt-run_results.json"))
            db_passed = {u for u, (s, _) in db.items() if s in PASS}
            line["dbt_nodes"] = len(db)
            line["dbt"] = len(db_passed)
            line["both"] = len(db_passed & rs_passed)
            only_dbt = sorted(db_passed - rs_passed)
            line["only_dbt"] = len(only_dbt)
            for u in only_dbt:
                details.append(f"{label}: passes on dbt only: {u} (rsdbt: {rs.get(u, ('absent', ''))[0]})")
            for u in sorted(set(db) - set(rs)):
                details.append(f"{label}: node only in dbt's run: {u}")
            rc, dc = counts(os.path.join(rs_dir, "compat-rsdbt-counts.txt")), counts(
                os.path.join(dbt_dir, "compat-dbt-counts.txt"))
            common = sorted(set(rc) & set(dc))
            same = [u for u in common if rc[u] == dc[u]]
            line["rows_equal"] = f"{len(same)}/{len(common)}"
            for u in common:
                if rc[u] != dc[u]:
                    details.append(f"{label}: row count differs for {u}: rsdbt {rc[u]}, dbt {dc[u]}")
            rsc, dbc = compiled(rs_dir), compiled(dbt_dir)
            both = sorted(set(rsc) & set(dbc))
            differ = [p for p in both if rsc[p] != dbc[p]]
            line["sql_differs"] = f"{len(differ)}/{len(both)}"
            for p in differ:
                details.append(f"{label}: compiled SQL differs: {p}")
        table.append(line)
    cols = ["project", "nodes", "rsdbt", "dbt_nodes", "dbt", "both", "only_dbt", "rows_equal", "sql_differs"]
    cols = [c for c in cols if any(c in t for t in table)]
    widths = {c: max(len(c), *(len(str(t.get(c, ""))) for t in table)) for c in cols}
    print()
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for t in table:
        print("  ".join(str(t.get(c, "")).ljust(widths[c]) for c in cols))
    print()
    print("columns: nodes run by rsdbt; rsdbt/dbt = nodes passing (success, pass, warn); both = passing on both;")
    print("only_dbt = passing on dbt-core only; rows_equal = relations with equal row counts; sql_differs =")
    print("compiled files differing beyond whitespace, quoting and comments")
    if details:
        print()
        for d in details:
            print("  " + d)


if __name__ == "__main__":
    main(sys.argv[1:])
