#!/usr/bin/env python3
"""Generates a synthetic rsdbt/dbt project with N models for benchmarks.

Layout: N/5 bronze views over seeds-free inline SQL, 2N/5 silver tables that ref bronze (and
each other), 2N/5 gold tables that ref silver; a macro file used by every silver model; folder
configs in the project file; one properties file per layer with descriptions and yml tests.
Deterministic for a given N.

With DENSE (any third argument, `dense`), models carry the generic tests real projects have —
4 to 5 per model: not_null and unique keys, not_null columns, accepted_values, relationships to
the upstream model — as in the issue's 1,000-model / 4,377-test and 10,000-model / 44,000-test
figures.

Usage: python3 scripts/gen_synthetic_project.py N OUT_DIR [dense]
"""
import os
import random
import sys


def column(name, tests):
    """A column entry of a properties file with its generic tests, in block style."""
    return [f"      - name: {name}", "        data_tests:"] + [f"          - {t}" for t in tests]


def main():
    n = int(sys.argv[1])
    out = sys.argv[2]
    dense = len(sys.argv) > 3
    rng = random.Random(n)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "project.yml"), "w") as f:
        f.write(
            "name: synthetic\nprofile: synthetic\n"
            "vars:\n  min_amount: 10\n"
            "models:\n  synthetic:\n    +materialized: view\n"
            "    silver:\n      +materialized: table\n      +schema: silver\n      +tags: ['silver']\n"
            "    gold:\n      +materialized: table\n      +schema: gold\n      +tags: ['gold']\n"
        )
    with open(os.path.join(out, "profiles.yml"), "w") as f:
        f.write("synthetic:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      threads: 4\n")
    os.makedirs(os.path.join(out, "macros"), exist_ok=True)
    with open(os.path.join(out, "macros", "helpers.sql"), "w") as f:
        f.write(
            "{% macro cents(col) -%}({{ col }} / 100.0){%- endmacro %}\n"
            "{% macro active_filter(alias) -%}{{ alias }}.amount >= {{ var('min_amount') }}{%- endmacro %}\n"
        )
    n_bronze = max(1, n // 5)
    n_silver = max(1, (2 * n) // 5)
    n_gold = max(1, n - n_bronze - n_silver)
    layers = {"bronze": [], "silver": [], "gold": []}
    for layer, count in (("bronze", n_bronze), ("silver", n_silver), ("gold", n_gold)):
        d = os.path.join(out, "models", layer)
        os.makedirs(d, exist_ok=True)
        props = ["version: 2", "models:"]
        for i in range(count):
            name = f"{layer}_{i:05d}"
            layers[layer].append(name)
            if layer == "bronze":
                sql = (f"select {i} as id, {i} * 7 as amount, 'row {i}' as label\n"
                       f"union all select {i + 1}, {i} * 3, 'row {i + 1}'\n")
            elif layer == "silver":
                up = rng.choice(layers["bronze"])
                extra = rng.choice(layers["silver"][:-1]) if len(layers["silver"]) > 1 and rng.random() < 0.3 else None
                sql = (f"-- silver model {i}\nselect b.id, {{{{ cents('b.amount') }}}} as amount_usd, b.label\n"
                       f"from {{{{ ref('{up}') }}}} b\nwhere {{{{ active_filter('b') }}}}\n")
                if extra:
                    sql += f"and b.id in (select id from {{{{ ref('{extra}') }}}})\n"
            else:
                ups = rng.sample(layers["silver"], min(2, len(layers["silver"])))
                cfg = "{{ config(alias='mart_%05d') }}\n" % i if i % 10 == 0 else ""
                sql = cfg + (f"select s.label, sum(s.amount_usd) as total\nfrom {{{{ ref('{ups[0]}') }}}} s\n"
                             f"join {{{{ ref('{ups[-1]}') }}}} t on t.id = s.id\ngroup by s.label\n")
            with open(os.path.join(d, name + ".sql"), "w") as f:
                f.write(sql)
            props += [f"  - name: {name}", f"    description: \"{layer} model number {i}\"",
                      "    columns:"]
            if not dense:
                props += ["      - name: id" if layer != "gold" else "      - name: label",
                          "        data_tests: [not_null]"]
            elif layer == "bronze":
                props += column("id", ["not_null", "unique"]) + column("amount", ["not_null"])
                props += column("label", ["not_null"] + ([
                    f"accepted_values: {{arguments: {{values: ['row {i}', 'row {i + 1}']}}}}"]
                    if i % 3 == 0 else []))
            elif layer == "silver":
                props += column("id", ["not_null", f"relationships: {{arguments: {{to: \"ref('{up}')\", field: id}}}}"]
                                + (["unique"] if i % 2 == 0 else []))
                props += column("amount_usd", ["not_null"]) + column("label", ["not_null"])
            else:
                props += column("label", ["not_null", "unique"] + ([
                    f"relationships: {{arguments: {{to: \"ref('{ups[0]}')\", field: label}}}}"]
                    if i % 2 == 0 else []))
                props += column("total", ["not_null"])
        with open(os.path.join(d, "schema.yml"), "w") as f:
            f.write("\n".join(props) + "\n")
    print(f"{out}: {n_bronze} bronze, {n_silver} silver, {n_gold} gold models")


if __name__ == "__main__":
    main()
