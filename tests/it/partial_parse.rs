//! Partial parsing: a second parse of an unchanged project reuses every parse render; a change
//! to a model, a macro, vars or an environment variable a model reads renders again exactly
//! what it must, and the manifest is the same as a full parse's.

use std::process::Command;

use crate::harness::Project;

/// Runs `rsdbt parse` with RSDBT_TIMINGS (which reports reused renders) and `env`; the
/// stamp of an unchanged project is removed first, so that the parse runs.
fn parse(p: &Project, args: &[&str], env: &[(&str, &str)]) -> usize {
    let _ = std::fs::remove_file(p.path().join("target/rsdbt/parse_stamp.json"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsdbt"));
    cmd.arg("parse")
        .args(args)
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .env("HOME", p.path())
        .env("RSDBT_TIMINGS", "1")
        .env_remove("DBT_PROFILES_DIR")
        .env_remove("RSDBT_PROFILES_DIR")
        .env_remove("RSDBT_WAREHOUSE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (reused, read): (usize, usize) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("partial parse: "))
        .and_then(|l| l.split_once(" renders reused, "))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.split_whitespace().next()?.parse().ok()?)))
        .unwrap_or_else(|| panic!("no partial parse line: {stderr}"));
    // Models read without a render (dbt's static parser) are never cached, as there is
    // nothing to save; `--no-static-parser` renders them.
    let expected: usize = if args.contains(&"--no-static-parser") {
        0
    } else {
        8
    };
    assert_eq!(read, expected, "{stderr}");
    reused
}

fn nodes(p: &Project) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_str(&p.read("target/rsdbt/manifest.json")).unwrap();
    let mut nodes = m["nodes"].clone();
    // When the parse ran; everything else must be equal.
    for n in nodes.as_object_mut().unwrap().values_mut() {
        n.as_object_mut().unwrap().remove("created_at");
    }
    nodes
}

#[test]
fn unchanged_nodes_reuse_their_parse() {
    let p = Project::example();
    // Models (the lake and stream targets' too, before they are disabled) and the snapshot
    // render at parse, except the 8 whose only Jinja is ref/source/config with literal
    // arguments (read without a render, as dbt's static parser does): 9 + 1.
    let all = 10;
    p.write(
        "models/gold/gld_env.sql",
        "{{ config(materialized='view', tags=[env_var('RSDBT_TEST_TAG', 'none')]) }}\nselect 1 as x\n",
    );
    assert_eq!(parse(&p, &[], &[]), 0);
    let full = nodes(&p);
    // Nothing changed since (the same environment too): the manifest stands, untouched.
    p.rsdbt(&["parse"]).expect(0);
    let written = std::fs::metadata(p.path().join("target/rsdbt/manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    let out = p.rsdbt(&["parse"]).expect(0);
    assert!(
        out.stdout
            .contains("nothing changed since the last parse, target/rsdbt/manifest.json stands"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Found 12 models"), "{}", out.stdout);
    let kept = std::fs::metadata(p.path().join("target/rsdbt/manifest.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(kept, written);
    // The shell's own variables do not count: the same project parsed from another folder
    // (PWD differs) stands too.
    let out = p
        .rsdbt_env(&["parse"], &[("PWD", "/"), ("OLDPWD", "/tmp")])
        .expect(0);
    assert!(
        out.stdout.contains("nothing changed since the last parse"),
        "{}",
        out.stdout
    );
    // Any changed environment variable parses again (a property file may read it).
    let out = p
        .rsdbt_env(&["parse"], &[("RSDBT_SOME_OTHER_VAR", "x")])
        .expect(0);
    assert!(
        out.stdout.contains("wrote target/rsdbt/manifest.json"),
        "{}",
        out.stdout
    );
    assert_eq!(parse(&p, &[], &[]), all + 1);
    assert_eq!(nodes(&p), full, "the cached parse gives the same nodes");
    // One model changes: only it renders again.
    p.append("models/silver/slv_geo.sql", "\n-- a comment\n");
    assert_eq!(parse(&p, &[], &[]), all);
    // An environment variable a model reads: that model renders again, with its new value.
    assert_eq!(parse(&p, &[], &[("RSDBT_TEST_TAG", "nightly")]), all);
    let n = nodes(&p);
    assert_eq!(
        n["model.pinboard.gld_env"]["tags"],
        serde_json::json!(["gold", "nightly"])
    );
    // Vars, macros and --no-partial-parse: everything renders again.
    assert_eq!(
        parse(
            &p,
            &["--vars", "{min_year: 2019}"],
            &[("RSDBT_TEST_TAG", "nightly")]
        ),
        0
    );
    p.append(
        "macros/cleaning.sql",
        "\n{% macro unused() %}1{% endmacro %}\n",
    );
    assert_eq!(parse(&p, &[], &[("RSDBT_TEST_TAG", "nightly")]), 0);
    assert_eq!(
        parse(
            &p,
            &["--no-partial-parse"],
            &[("RSDBT_TEST_TAG", "nightly")]
        ),
        0
    );
    // Without the static parser every model renders, and the manifest is the same.
    let with = nodes(&p);
    parse(
        &p,
        &["--no-static-parser"],
        &[("RSDBT_TEST_TAG", "nightly")],
    );
    assert_eq!(nodes(&p), with);
}
