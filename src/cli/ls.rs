//! `rsdbt ls`: the selected resources as selectors, names, paths or JSON. JSON lines carry
//! dbt's default keys, or any key of the resource's manifest entry with `--output-keys`, in
//! the order dbt's dictionaries have them.

use serde_json::Value as Json;

use super::args::{Cli, LsOutput, Selection};
use super::printer::Printer;
use crate::diag::Diagnostics;
use crate::manifest::{Invocation, Manifest, ResourceType};

pub(super) fn run(
    cli: &Cli,
    printer: &Printer,
    invocation: &Invocation,
    selection: &Selection,
    types: &[String],
    output: LsOutput,
    keys: &[String],
) -> Result<i32, Diagnostics> {
    let l = super::load(&cli.global, invocation)?;
    let state = super::load_state(selection, &l)?;
    let listed = [
        ResourceType::Model,
        ResourceType::Seed,
        ResourceType::Snapshot,
        ResourceType::Test,
        ResourceType::UnitTest,
        ResourceType::Analysis,
    ];
    // Sources and exposures are listed too when selected, though they do not run.
    let set = super::selection_set(&l, selection, state.as_ref())?;
    let ids: Vec<String> = set
        .into_iter()
        .filter(|id| {
            l.manifest.sources.contains_key(id)
                || l.manifest.exposures.contains_key(id)
                || l.manifest
                    .nodes
                    .get(id.as_str())
                    .is_some_and(|n| listed.contains(&n.resource_type))
        })
        .collect();
    for id in l.dag.sort(ids) {
        if let Some(line) = line(&l.manifest, &id, types, output, keys) {
            printer.raw(&line);
        }
    }
    Ok(0)
}

/// The keys `dbt ls --output json` prints without `--output-keys`.
const DEFAULT_KEYS: [&str; 10] = [
    "name",
    "resource_type",
    "package_name",
    "original_file_path",
    "unique_id",
    "alias",
    "source_name",
    "config",
    "tags",
    "depends_on",
];

fn line(
    m: &Manifest,
    id: &str,
    types: &[String],
    output: LsOutput,
    keys: &[String],
) -> Option<String> {
    let type_ok = |t: &str| {
        types.is_empty()
            || types
                .iter()
                .any(|x| x == t || x == "all" || (x == "default" && t != "source"))
    };
    let (kind, selector, name, path, full): (&str, String, String, &str, Box<dyn Fn() -> Json>) =
        if let Some(n) = m.nodes.get(id) {
            (
                n.resource_type.as_str(),
                n.fqn.join("."),
                n.name.to_string(),
                &n.original_file_path,
                Box::new(|| crate::artifacts::node_json(m, n)),
            )
        } else if let Some(e) = m.exposures.get(id) {
            (
                "exposure",
                format!("exposure:{}.{}", e.package, e.def.name),
                e.def.name.clone(),
                &e.def.file,
                Box::new(|| crate::artifacts::exposure_json(m, e)),
            )
        } else {
            let s = m.sources.get(id)?;
            (
                "source",
                format!("source:{}.{}.{}", s.package, s.def.source_name, s.def.name),
                format!("{}.{}", s.def.source_name, s.def.name),
                &s.def.file,
                Box::new(|| crate::artifacts::source_json(m, s)),
            )
        };
    if !type_ok(kind) {
        return None;
    }
    Some(match output {
        LsOutput::Selector => selector,
        LsOutput::Name => name,
        LsOutput::Path => path.to_string(),
        LsOutput::Json => {
            let Json::Object(all) = full() else {
                return None;
            };
            let wanted = |k: &str| {
                if keys.is_empty() {
                    DEFAULT_KEYS.contains(&k)
                } else {
                    keys.iter().any(|x| x == k)
                }
            };
            let mut fields: Vec<(&String, &Json)> = all.iter().filter(|(k, _)| wanted(k)).collect();
            let order = key_order(kind);
            let rank = |k: &str| order.iter().position(|o| *o == k).unwrap_or(order.len());
            fields.sort_by_key(|(k, _)| rank(k));
            let parts: Vec<String> = fields
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        python_json(&Json::String((*k).clone())),
                        python_json(v)
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    })
}

/// The order of the keys in dbt's dictionary of each kind of resource (its manifest entry).
fn key_order(kind: &str) -> &'static [&'static str] {
    match kind {
        "source" => &[
            "database",
            "schema",
            "name",
            "resource_type",
            "package_name",
            "path",
            "original_file_path",
            "unique_id",
            "fqn",
            "source_name",
            "source_description",
            "loader",
            "identifier",
            "quoting",
            "loaded_at_field",
            "freshness",
            "external",
            "description",
            "columns",
            "meta",
            "source_meta",
            "tags",
            "config",
            "patch_path",
            "unrendered_config",
            "relation_name",
            "created_at",
        ],
        "exposure" => &[
            "name",
            "resource_type",
            "package_name",
            "path",
            "original_file_path",
            "unique_id",
            "fqn",
            "type",
            "owner",
            "description",
            "label",
            "maturity",
            "meta",
            "tags",
            "config",
            "unrendered_config",
            "url",
            "depends_on",
            "refs",
            "sources",
            "metrics",
            "created_at",
        ],
        _ => &[
            "database",
            "schema",
            "name",
            "resource_type",
            "package_name",
            "path",
            "original_file_path",
            "unique_id",
            "fqn",
            "alias",
            "checksum",
            "config",
            "tags",
            "description",
            "columns",
            "meta",
            "group",
            "docs",
            "patch_path",
            "build_path",
            "unrendered_config",
            "created_at",
            "config_call_dict",
            "relation_name",
            "raw_code",
            "language",
            "refs",
            "sources",
            "metrics",
            "depends_on",
            "compiled_path",
            "compiled",
            "compiled_code",
            "extra_ctes_injected",
            "extra_ctes",
            "contract",
            "access",
            "constraints",
            "version",
            "latest_version",
            "deprecation_date",
        ],
    }
}

/// JSON as dbt's `ls --output json` prints it (Python's `json.dumps`): `", "` and `": "`
/// separators, non-ASCII characters escaped.
fn python_json(v: &serde_json::Value) -> String {
    struct Python;
    impl serde_json::ser::Formatter for Python {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first { Ok(()) } else { w.write_all(b", ") }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first { Ok(()) } else { w.write_all(b", ") }
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(b": ")
        }
        fn write_string_fragment<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
            for c in fragment.chars() {
                if c.is_ascii() {
                    w.write_all(&[c as u8])?;
                } else {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        write!(w, "\\u{u:04x}")?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Python);
    serde::Serialize::serialize(v, &mut ser).expect("JSON values serialize");
    String::from_utf8(out).expect("ASCII output")
}
