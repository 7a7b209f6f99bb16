//! `profiles.yml`: found as dbt finds it, then one target resolved into a [`Target`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::diag::{Diagnostic, Location, did_you_mean};
use crate::project::render_yaml_strings;
use crate::project::yaml;

/// The resolved output of a profile: what `target` means in Jinja and which adapter runs.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target name (`dev`, `prod`, ...).
    pub name: String,
    /// The profile name in profiles.yml.
    pub profile_name: String,
    /// Adapter type: `datafusion` (embedded) or `postgres`.
    pub adapter_type: String,
    pub schema: String,
    pub database: String,
    pub threads: usize,
    /// Every key of the output, rendered (passwords included; never print this whole).
    pub fields: serde_json::Map<String, Json>,
    /// The profiles.yml that was read.
    pub profiles_path: PathBuf,
}

impl Target {
    /// `target` as Jinja sees it: every field except secrets, plus name/type/profile_name.
    pub fn jinja_value(&self) -> Json {
        let m = self.fields.clone();
        // Credentials stay out of Jinja, at any depth (`connections:` hold passwords too).
        fn strip(v: &mut Json) {
            match v {
                Json::Object(m) => {
                    m.retain(|k, _| !crate::secrets::CREDENTIAL_KEYS.contains(&k.as_str()));
                    m.values_mut().for_each(strip);
                }
                Json::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        let mut all = Json::Object(m);
        strip(&mut all);
        let Json::Object(mut m) = all else {
            unreachable!("an object stays an object")
        };
        m.insert("name".into(), self.name.clone().into());
        m.insert("target_name".into(), self.name.clone().into());
        m.insert("type".into(), self.adapter_type.clone().into());
        m.insert("profile_name".into(), self.profile_name.clone().into());
        m.insert("schema".into(), self.schema.clone().into());
        m.insert("database".into(), self.database.clone().into());
        m.insert("threads".into(), self.threads.into());
        Json::Object(m)
    }

    /// Where the embedded target's warehouse is: a URL (`s3://...`) as written, a folder with
    /// relative paths taken from the project root.
    pub fn warehouse_location(&self, project_root: &Path) -> String {
        let p = self
            .fields
            .get("path")
            .and_then(Json::as_str)
            .unwrap_or("warehouse");
        if p.contains("://") {
            return p.to_string();
        }
        project_root.join(p).to_string_lossy().into_owned()
    }

    /// The embedded engine's memory limit in bytes (`memory_limit:`, e.g. `4GB`, `512MiB` or a
    /// number of bytes); half of the machine's memory when unset. A query that needs more spills
    /// to disk where it can and otherwise fails with a message saying so.
    pub fn memory_limit(&self) -> Result<usize, String> {
        match self.fields.get("memory_limit") {
            None | Some(Json::Null) => Ok(default_memory_limit()),
            Some(Json::Number(n)) => n
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| format!("memory_limit {n} is not a number of bytes")),
            Some(Json::String(s)) => parse_bytes(s).ok_or_else(|| {
                format!("memory_limit '{s}' is not a size (write e.g. 4GB, 512MB or 2GiB)")
            }),
            Some(other) => Err(format!(
                "memory_limit {other} is not a size (write e.g. 4GB)"
            )),
        }
    }

    /// The local SQLite file of the Iceberg catalog (`iceberg_catalog:`), relative paths taken
    /// from the project root.
    pub fn iceberg_catalog(&self, project_root: &Path) -> Option<PathBuf> {
        let p = self.fields.get("iceberg_catalog").and_then(Json::as_str)?;
        Some(project_root.join(p))
    }
}

/// Where profiles.yml is looked for, in dbt's order.
pub fn search_dirs(explicit: Option<&Path>, project_root: &Path) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    let mut dirs = Vec::new();
    for var in ["RSDBT_PROFILES_DIR", "DBT_PROFILES_DIR"] {
        if let Ok(d) = std::env::var(var)
            && !d.is_empty()
        {
            dirs.push(PathBuf::from(d));
            return dirs;
        }
    }
    dirs.push(project_root.to_path_buf());
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        dirs.push(home.join(".rsdbt"));
        dirs.push(home.join(".dbt"));
    }
    dirs
}

/// Reads the profile `profile_name` and resolves `target_override` or its default target.
pub fn load(
    dirs: &[PathBuf],
    profile_name: &str,
    target_override: Option<&str>,
    threads_override: Option<usize>,
    vars: &serde_json::Map<String, Json>,
    project_file: &Location,
) -> Result<Target, Diagnostic> {
    let Some(path) = dirs
        .iter()
        .map(|d| d.join("profiles.yml"))
        .find(|p| p.is_file())
    else {
        let looked = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Diagnostic::error(
            "profile",
            format!("could not find profiles.yml for profile '{profile_name}' (looked in: {looked})"),
        )
        .at(project_file.clone())
        .label("profile named here")
        .hint("create profiles.yml in the project folder (run `rsdbt init` for an example) or pass --profiles-dir"));
    };
    let display = path.display().to_string();
    let text: Arc<str> = std::fs::read_to_string(&path)
        .map_err(|e| {
            let d = Diagnostic::error("profile", format!("cannot read {display}: {e}"));
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                d.hint("the user running rsdbt must be able to read it")
            } else {
                d
            }
        })?
        .into();
    let doc = yaml::parse(&display, &text)?;
    let doc = render_yaml_strings(doc, vars, &|_| false, true).map_err(|msg| {
        Diagnostic::error("profile", format!("{display}: {msg}"))
            .at(Location::file(&display, text.clone()))
    })?;
    crate::secrets::register_credentials(&doc);
    let profiles = doc.as_object().cloned().unwrap_or_default();
    let Some(profile) = profiles.get(profile_name) else {
        let names: Vec<&str> = profiles
            .keys()
            .filter(|k| *k != "config")
            .map(String::as_str)
            .collect();
        return Err(Diagnostic::error(
            "profile",
            format!("profile '{profile_name}' is not defined in {display}"),
        )
        .at(project_file.clone())
        .label("this profile")
        .hint(did_you_mean(
            profile_name,
            names.iter().copied(),
            &format!(
                "profiles defined there: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
        )));
    };
    let default_target = yaml::str_of(profile, "target").unwrap_or("dev");
    let target_name = target_override.unwrap_or(default_target).to_string();
    let outputs = profile
        .get("outputs")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let Some(output) = outputs.get(&target_name).and_then(Json::as_object) else {
        let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
        return Err(Diagnostic::error(
            "profile",
            format!(
                "target '{target_name}' is not defined in profile '{profile_name}' ({display})"
            ),
        )
        .at(Location::find(
            &display,
            text.clone(),
            &format!("{profile_name}:"),
        ))
        .hint(did_you_mean(
            &target_name,
            names.iter().copied(),
            &format!(
                "targets of this profile: {}; choose one with --target",
                names.join(", ")
            ),
        )));
    };
    let adapter_type = output
        .get("type")
        .and_then(Json::as_str)
        .unwrap_or("datafusion")
        .to_string();
    if !matches!(adapter_type.as_str(), "datafusion" | "postgres" | "spark") {
        return Err(Diagnostic::error(
            "profile",
            format!(
                "target '{target_name}' has type '{adapter_type}', which rsdbt does not support"
            ),
        )
        .at(Location::find(&display, text.clone(), &adapter_type))
        .hint("use `type: datafusion` (embedded engine), `type: postgres` or `type: spark` (Spark Connect)"));
    }
    // Unset, as many as the machine has cores (dbt's default is 1: a project that sets none
    // would use one core of many).
    let threads = threads_override
        .or_else(|| output.get("threads").and_then(json_usize))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let schema = output
        .get("schema")
        .and_then(Json::as_str)
        .unwrap_or(match adapter_type.as_str() {
            "postgres" => "public",
            "spark" => "default",
            _ => "main",
        })
        .to_string();
    let database = if adapter_type == "spark" {
        // dbt-spark's relations are `schema.identifier`; a Unity/Hive `catalog:` (as
        // dbt-databricks) comes first when the server has one.
        output
            .get("catalog")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    } else {
        output
            .get("database")
            .or_else(|| output.get("dbname"))
            .and_then(Json::as_str)
            .unwrap_or("warehouse")
            .to_string()
    };
    // Spark SQL reads "x" as a string: its identifiers are quoted with backticks.
    crate::jinja::quote_with_backticks(adapter_type == "spark");
    Ok(Target {
        name: target_name,
        profile_name: profile_name.to_string(),
        adapter_type,
        schema,
        database,
        threads,
        fields: output.clone(),
        profiles_path: path,
    })
}

fn json_usize(v: &Json) -> Option<usize> {
    v.as_u64()
        .map(|n| n as usize)
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Half of the machine's memory (Linux: MemTotal), or 4 GB when it cannot be read.
fn default_memory_limit() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map(|kb| kb * 1024 / 2)
        .unwrap_or(4 << 30)
}

/// `4GB`, `512 MB`, `2GiB`, `1024` (bytes).
fn parse_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((num * factor) as usize)
}

#[cfg(test)]
mod memory_tests {
    #[test]
    fn sizes_parse_as_people_write_them() {
        assert_eq!(super::parse_bytes("4GB"), Some(4_000_000_000));
        assert_eq!(super::parse_bytes("512 MiB"), Some(512 << 20));
        assert_eq!(super::parse_bytes("1024"), Some(1024));
        assert_eq!(super::parse_bytes("lots"), None);
        assert!(super::default_memory_limit() > 0);
    }
}
