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
