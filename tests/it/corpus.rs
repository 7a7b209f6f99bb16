//! The broken-project corpus: `tests/corpus/<case>/` is a project (a default project file and
//! profile are added when it has none) and `case.json` says the command, the exit code, and
//! what the message must name. Every case: that exit code, no internal error, the message
//! (snapshotted), and — when the run is refused — no table written. A case with `chmod`
//! (path → octal mode) runs as an unprivileged user, whom those modes stop (root they do not).

use std::path::Path;

use serde_json::Value;

use crate::harness::{DEFAULT_PROFILE, Project, repo_root};

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy(&e.path(), &dest);
        } else if e.file_name() != "case.json" {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The message with what changes from run to run taken out: the temp folder, times.
/// `(n, 0)` for the line starting node `n`, `(n, 1)` for its result.
fn node_key(line: &str) -> (usize, u8) {
    let n = line
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (n, u8::from(!line.contains(" START ")))
}

fn normalized(text: &str, dir: &Path) -> String {
    let clock = regex::Regex::new(r"(?m)^\d\d:\d\d:\d\d( {2}|$)").unwrap();
    let elapsed =
        regex::Regex::new(r"\d+ hours \d+ minutes and \d+\.\d+ seconds \(\d+\.\d+s\)|\d+\.\d+s")
            .unwrap();
    let text = text.replace(&dir.display().to_string(), "<project>");
    let text = clock.replace_all(&text, "");
    let text = elapsed.replace_all(&text, "<time>");
    // Nodes run on several threads: their `n of m` lines are put in order of `n`, each start
    // before its result, so the interleaving does not change the snapshot.
    let node_line = regex::Regex::new(r"^\d+ of \d+ ").unwrap();
    let mut lines: Vec<&str> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.lines() {
        if node_line.is_match(line) {
            run.push(line);
            continue;
        }
        run.sort_by_key(|l| node_key(l));
        lines.append(&mut run);
        lines.push(line);
    }
    run.sort_by_key(|l| node_key(l));
    lines.append(&mut run);
    lines.join("\n").trim_end().to_string()
}

#[test]
fn broken_projects_fail_clearly() {
    let root = repo_root().join("tests/corpus");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 50, "{} cases", names.len());
    let mut failures = Vec::new();
    for name in &names {
        let case: Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(name).join("case.json")).unwrap(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        copy(&root.join(name), dir.path());
        if !dir.path().join("profiles.yml").exists() {
            std::fs::write(dir.path().join("profiles.yml"), DEFAULT_PROFILE).unwrap();
        }
        for (file, spec) in case["generate"].as_object().into_iter().flatten() {
            let body = spec["repeat"]
                .as_str()
                .unwrap()
                .repeat(spec["times"].as_u64().unwrap() as usize);
            let text = format!(
                "{}{body}{}",
                spec["head"].as_str().unwrap(),
                spec["tail"].as_str().unwrap()
            );
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let p = Project { dir };
        let args: Vec<&str> = case["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        // Permission cases: what `unprivileged` lists is opened to the user the run is made
        // as; then `chmod` takes rights away.
        let out = if let Some(modes) = case["chmod"].as_object() {
            p.open_to_all();
            for (file, mode) in modes {
                let mode = u32::from_str_radix(mode.as_str().unwrap(), 8).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    p.path().join(file),
                    std::fs::Permissions::from_mode(mode),
                )
                .unwrap();
            }
            p.rsdbt_unprivileged(&args)
        } else {
            p.rsdbt(&args)
        };
        let both = format!("{}\n{}", out.stderr, out.stdout);
        let expected = case["exit"].as_i64().unwrap() as i32;
        let mut problems = Vec::new();
        if out.code != expected {
            problems.push(format!("exit {} instead of {expected}", out.code));
        }
        if both.contains("internal error") || both.contains("panicked") {
            problems.push("an internal error".to_string());
        }
        for needle in case["contains"].as_array().unwrap() {
            let needle = needle.as_str().unwrap();
            if !both.contains(needle) {
                problems.push(format!("no '{needle}' in the message"));
            }
        }
        if expected == 2 {
            let tables: Vec<String> = walk(&p.path().join("warehouse"))
                .into_iter()
                .filter(|f| !f.ends_with(".rsdbt.lock") && !f.ends_with(".keep"))
                .collect();
            if !tables.is_empty() && name != "warehouse_not_a_folder" {
                problems.push(format!("a refused run wrote {tables:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\n--- stderr\n{}\n--- stdout\n{}",
                problems.join("; "),
                out.stderr,
                out.stdout
            ));
        }
        // The message a user sees: stderr for refused runs, the summary for failed ones.
        let shown = if expected == 2 {
            out.stderr.clone()
        } else {
            both.clone()
        };
        insta::with_settings!({snapshot_suffix => name.clone(), prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!("corpus", normalized(&shown, p.path()));
        });
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n\n{}",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}
