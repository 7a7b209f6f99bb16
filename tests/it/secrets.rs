//! Secrets never leave the places that need them: `DBT_ENV_SECRET_*` values and profile
//! passwords appear in no log line, artifact, compiled SQL, metrics file, docs page or lock file
//! (a planted secret is searched for in everything a run writes), and a model may not read one.

use crate::harness::Project;

const PASSWORD: &str = "planted-password-7f3a";
const TOKEN: &str = "planted-token-91c2";
const PACKAGE_DIR: &str = "vendor-planted-c0ffee";

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn planted_secrets_appear_nowhere() {
    let p = Project::fixture("check_shop");
    p.write(
        "profiles.yml",
        "fixture:\n  target: dev\n  outputs:\n    dev:\n      type: datafusion\n      path: warehouse\n      schema: main\n      threads: 2\n      password: \"{{ env_var('DBT_ENV_SECRET_DB_PASSWORD') }}\"\n      connections:\n        app: {type: postgres, host: localhost, password: \"{{ env_var('DBT_ENV_SECRET_DB_PASSWORD') }}\"}\n",
    );
    // A package whose location is a secret (as a git URL with a token would be).
    p.write(
        &format!("{PACKAGE_DIR}/helpers/dbt_project.yml"),
        "name: helpers\nversion: '1.0'\nconfig-version: 2\n",
    );
    p.write(
        "packages.yml",
        "packages:\n  - local: \"{{ env_var('DBT_ENV_SECRET_PKG') }}/helpers\"\n",
    );
    // A model that renders the whole target and logs it.
    p.write(
        "models/whoami.sql",
        "{{ log('target: ' ~ target, info=True) }}\nselect '{{ target.name }}' as target_name, '{{ target | tojson | replace(\"'\", \"\") }}' as target_json\n",
    );
    let env = [
        ("DBT_ENV_SECRET_DB_PASSWORD", PASSWORD),
        ("DBT_ENV_SECRET_TOKEN", TOKEN),
        ("DBT_ENV_SECRET_PKG", PACKAGE_DIR),
    ];
    let mut seen = String::new();
    for args in [
        &["deps"][..],
        &["seed"],
        &[
            "build",
            "--log-format",
            "json",
            "--metrics-file",
            "metrics/run.prom",
        ],
        &["compile"],
        &["docs", "generate"],
        &["debug"],
        &["ls", "--output", "json"],
    ] {
        let out = p.rsdbt_env(args, &env);
        assert!(out.code == 0, "{args:?}\n{}\n{}", out.stdout, out.stderr);
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    assert!(seen.contains("target: "), "the model logged its target");
    assert!(
        p.read("package-lock.yml").contains("DBT_ENV_SECRET_PKG"),
        "the lock keeps the unrendered location"
    );
    let mut files = Vec::new();
    for dir in ["target", "metrics"] {
        files_under(&p.path().join(dir), &mut files);
    }
    files.push(p.path().join("package-lock.yml"));
    files.push(p.path().join("warehouse/.rsdbt.lock"));
    assert!(files.len() > 10, "{files:?}");
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        seen.push_str(&text);
        for secret in [PASSWORD, TOKEN, PACKAGE_DIR] {
            assert!(!text.contains(secret), "{secret} in {}", f.display());
        }
    }
    for secret in [PASSWORD, TOKEN, PACKAGE_DIR] {
        assert!(!seen.contains(secret), "{secret} was printed");
    }
}

#[test]
fn a_model_may_not_read_a_secret() {
    let p = Project::fixture("check_shop");
    p.write(
        "models/leak.sql",
        "select '{{ env_var(\"DBT_ENV_SECRET_TOKEN\") }}' as t\n",
    );
    let out = p
        .rsdbt_env(&["run"], &[("DBT_ENV_SECRET_TOKEN", TOKEN)])
        .expect(2);
    assert!(
        out.stderr
            .contains("Secret env vars are allowed only in profiles.yml or packages.yml")
            && out.stderr.contains("models/leak.sql"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(TOKEN) && !out.stdout.contains(TOKEN));
}

/// A Spark Connect token, as a key of its own or inside the `sc://` URL, is in no message of a
/// failed connection, `debug` included, and in no file the run writes.
#[test]
fn a_spark_token_appears_nowhere() {
    let p = Project::fixture("check_shop");
    p.write(
        "profiles.yml",
        "fixture:\n  target: keyed\n  outputs:\n    keyed:\n      type: spark\n      method: connect\n      host: sc://127.0.0.1:1\n      token: \"{{ env_var('DBT_ENV_SECRET_TOKEN') }}\"\n      cluster: \"{{ env_var('DBT_ENV_SECRET_CLUSTER') }}\"\n      schema: main\n    in_url:\n      type: spark\n      host: \"sc://127.0.0.1:1/;token={{ env_var('DBT_ENV_SECRET_TOKEN') }};x-databricks-cluster-id={{ env_var('DBT_ENV_SECRET_CLUSTER') }}\"\n      schema: main\n",
    );
    let env = [
        ("DBT_ENV_SECRET_TOKEN", TOKEN),
        ("DBT_ENV_SECRET_CLUSTER", PASSWORD),
    ];
    let mut seen = String::new();
    for target in ["keyed", "in_url"] {
        for args in [&["run"][..], &["debug"], &["docs", "generate"]] {
            let mut all = args.to_vec();
            all.extend(["--target", target]);
            let out = p.rsdbt_env(&all, &env);
            assert_ne!(out.code, 0, "{all:?} reached no server");
            seen.push_str(&out.stdout);
            seen.push_str(&out.stderr);
        }
    }
    assert!(seen.contains("sc://127.0.0.1:1"), "{seen}");
    let mut files = Vec::new();
    files_under(&p.path().join("target"), &mut files);
    for f in &files {
        seen.push_str(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    for secret in [TOKEN, PASSWORD] {
        assert!(
            !seen.contains(secret),
            "{secret} was printed or written:\n{seen}"
        );
    }
}
