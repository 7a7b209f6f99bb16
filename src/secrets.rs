//! Secrets, as dbt treats them: `env_var('DBT_ENV_SECRET_...')` may be read only where
//! credentials live (profiles.yml, packages.yml), and the values of those variables and of a
//! profile's passwords and tokens are masked (`*****`) wherever rsdbt prints or writes text.

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// dbt's prefix for variables whose values are secrets.
pub const PREFIX: &str = "DBT_ENV_SECRET";

/// Profile keys whose values are credentials, at any depth (`connections:` too).
pub const CREDENTIAL_KEYS: [&str; 6] = [
    "password",
    "pass",
    "private_key",
    "private_key_passphrase",
    "token",
    "secret",
];

pub fn is_secret_var(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// Masks `value` from now on. Values shorter than 4 characters are not masked: they would
/// mask every occurrence of a common word or number in the output, hiding nothing.
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < 4 {
        return;
    }
    if let Ok(mut s) = SECRETS.write()
        && !s.iter().any(|v| v == value)
    {
        s.push(value.to_string());
        // Longest first, so a secret that contains another is masked whole.
        s.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// Masks the values of the environment's `DBT_ENV_SECRET*` variables.
pub fn register_env() {
    for (k, v) in std::env::vars() {
        if is_secret_var(&k) {
            register(&v);
        }
    }
}

/// Masks every credential of a rendered profile (any depth).
pub fn register_credentials(v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::String(s) if CREDENTIAL_KEYS.contains(&k.as_str()) => {
                        register(s)
                    }
                    other => register_credentials(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(register_credentials),
        _ => {}
    }
}

/// `text` with every registered secret replaced by `*****`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(secrets) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in secrets.iter() {
        out = out.replace(s.as_str(), "*****");
    }
    Cow::Owned(out)
}

/// Bytes to write to a file, masked when they are text holding a secret.
pub fn scrub_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(bytes).map(scrub) {
        Ok(Cow::Owned(s)) => Cow::Owned(s.into_bytes()),
        _ => Cow::Borrowed(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_longest_first() {
        register("hunter2-long-secret");
        register("hunter2");
        register("abc");
        assert_eq!(
            scrub("pw=hunter2-long-secret and hunter2, abc"),
            "pw=***** and *****, abc"
        );
        register_credentials(
            &serde_json::json!({"outputs": {"dev": {"connections": {"db": {"password": "nested-pw-1"}}}}}),
        );
        assert_eq!(scrub("x nested-pw-1 y"), "x ***** y");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }
}
