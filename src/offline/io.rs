//! What the offline commands (`mutate`, `test`, `explain`) read and how
//! they print JSON: a file or stdin, the persistence config validated as
//! `serve` validates it, an AdmissionReview document, and indented JSON.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::manifests;
use crate::config::Config;

/// `v` as indented JSON with a final newline, as the commands print it.
pub fn pretty<T: serde::Serialize>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v).context("printing JSON")?;
    s.push('\n');
    Ok(s)
}

/// The text of `path`, or of stdin for `-`.
pub fn read(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
    }
}

/// The persistence config at `path`, validated as `serve` validates it;
/// `label` names where the path came from in messages (`--config`, or
/// `config` for a case file's field).
pub fn load_config(path: &Path, label: &str) -> Result<Config> {
    let text = read(path).with_context(|| format!("cannot read {label} {}", path.display()))?;
    Config::from_yaml(&text).map_err(|e| anyhow!("{label} {}: {e}", path.display()))
}

/// The `--review` document from a file (or stdin): one YAML or JSON mapping.
pub fn parse_review(path: &Path) -> Result<Value> {
    let flag = "--review";
    let text = read(path).with_context(|| format!("cannot read {flag} {}", path.display()))?;
    // JSON first when it looks like JSON; YAML otherwise, or when that
    // fails (flow-style YAML also starts with `{`).
    let json = text
        .trim_start()
        .starts_with('{')
        .then(|| serde_json::from_str::<Value>(&text).ok())
        .flatten();
    let value: Value = match json {
        Some(v) => v,
        None => serde_yaml::from_str(&text).with_context(|| {
            format!(
                "{flag} {}: not valid YAML or JSON (one document expected)",
                path.display()
            )
        })?,
    };
    if !value.is_object() {
        bail!(
            "{flag} {}: expected a mapping, found {}",
            path.display(),
            manifests::kind(&value)
        );
    }
    Ok(value)
}
