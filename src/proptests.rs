//! Property tests in place of fuzzing: every reader of user input takes arbitrary input without
//! panicking, and what it refuses renders as a diagnostic (carets included, so a byte offset
//! inside a multi-byte character would show up here). `PROPTEST_CASES` raises the number of
//! cases for a long run (`scripts/fuzz.sh`); failures found are kept in `proptest-regressions/`
//! and replayed first on every run.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value as Json;

/// Text that looks like what the readers get: YAML/Jinja/SQL/selector punctuation, quotes,
/// indentation, multi-byte characters, plus fully arbitrary strings.
fn texty() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                Just("{{".to_string()),
                Just("}}".to_string()),
                Just("{%".to_string()),
                Just("%}".to_string()),
                Just(":".to_string()),
                Just("- ".to_string()),
                Just("\n  ".to_string()),
                Just("\n".to_string()),
                Just("'".to_string()),
                Just("\"".to_string()),
                Just("+".to_string()),
                Just("@".to_string()),
                Just(",".to_string()),
                Just("*".to_string()),
                Just("é".to_string()),
                Just("日本".to_string()),
                Just("models".to_string()),
                Just("name".to_string()),
                Just("ref('a')".to_string()),
                Just("tag:".to_string()),
                Just("config.".to_string()),
                "[a-z0-9_ ]{0,6}",
            ],
            0..40
        )
        .prop_map(|parts| parts.concat()),
        any::<String>(),
    ]
}

/// Arbitrary JSON whose keys are often the ones artifact readers look for.
fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        texty().prop_map(Json::String),
    ];
    let key = prop_oneof![
        Just("nodes".to_string()),
        Just("sources".to_string()),
        Just("macros".to_string()),
        Just("results".to_string()),
        Just("unique_id".to_string()),
        Just("status".to_string()),
        Just("checksum".to_string()),
        Just("config".to_string()),
        Just("columns".to_string()),
        Just("depends_on".to_string()),
        Just("max_loaded_at".to_string()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn selectors_parse_or_explain(raw in texty()) {
        if let Err(d) = crate::graph::select::parse_atom(&raw) {
            let _ = crate::diag::Diagnostics::from(d).render(false);
        }
        let _ = crate::graph::select::glob(&raw, "model.a.b");
        let _ = crate::graph::select::glob("a*b?c", &raw);
    }

    #[test]
    fn artifact_json_is_what_serde_json_writes(value in json()) {
        let mut out = Vec::new();
        crate::artifacts::json::write(&mut out, &value).unwrap();
        prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn yaml_loads_or_points_at_the_problem(text in texty()) {
        let source: Arc<str> = text.into();
        if let Err(d) = crate::project::yaml::parse("models/x.yml", &source) {
            let _ = crate::diag::Diagnostics::from(d).render(false);
        }
    }

    #[test]
    fn jinja_in_project_files_renders_or_explains(text in texty()) {
        let vars = serde_json::Map::new();
        let _ = crate::jinja::render_config_string(&text, &vars, false);
    }

    #[test]
    fn artifacts_from_other_tools_load_or_explain(
        manifest in json(),
        run_results in json(),
        sources in json(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        std::fs::write(dir.path().join("run_results.json"), run_results.to_string()).unwrap();
        std::fs::write(dir.path().join("sources.json"), sources.to_string()).unwrap();
        match crate::graph::state::load(dir.path()) {
            Ok(state) => {
                let _ = state.fresher("source.a.b.c");
            }
            Err(d) => {
                let _ = crate::diag::Diagnostics::from(d).render(false);
            }
        }
        let _ = crate::metrics::exposition(
            &[&manifest, &run_results, &sources],
            &crate::metrics::Origin { project: "p", target: "t" },
        );
    }
}

#[cfg(feature = "datafusion")]
proptest! {
    // Each case starts DataFusion: fewer in the suite, as many as PROPTEST_CASES in a long run.
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { 64 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn seeds_load_or_fail_the_node(bytes in proptest::collection::vec(
        prop_oneof![
            Just(b','), Just(b'\n'), Just(b'"'), Just(b'1'), Just(b'a'), Just(b'-'),
            Just(b':'), Just(b' '), Just(0xffu8), Just(0xc3u8), any::<u8>(),
        ],
        0..200,
    )) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, &bytes).unwrap();
        let seed = crate::materialize::SeedSpec {
            path,
            display_path: "seeds/s.csv".into(),
            delimiter: b',',
            column_types: vec![],
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ctx = datafusion::prelude::SessionContext::new();
            if let Ok(df) = crate::adapter::datafusion::read_seed(&ctx, &seed) {
                let _ = df.collect().await;
            }
        });
    }
}
