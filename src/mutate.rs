//! `persistence-webhook mutate`: the served decision, offline. It builds (or
//! reads) an AdmissionReview, calls [`crate::review::review_with`] with the
//! same bounds exactly as the server does, and prints the pod, the patch or the response.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::{MutateArgs, Output};
use crate::config::Config;
use crate::review::{review_with, Decision, API_V1};

/// How `mutate` ended, mapped to the exit status by `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Exit 0.
    Allowed,
    /// Exit 1: the webhook would refuse the pod.
    Denied,
}

/// What `mutate` prints: stdout and, on a denial, the message for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    /// The verdict.
    pub verdict: Verdict,
    /// For stdout (may be empty).
    pub stdout: String,
    /// For stderr (the denial message), if any.
    pub stderr: Option<String>,
}

/// Runs `mutate`. Errors are usage, input or config errors (exit 2); each
/// names the file or flag to fix.
pub fn run(args: &MutateArgs) -> Result<Printed> {
    let config_text = read(&args.config)
        .with_context(|| format!("cannot read --config {}", args.config.display()))?;
    let config = Config::from_yaml(&config_text)
        .map_err(|e| anyhow!("--config {}: {e}", args.config.display()))?;

    let (body, object) = match (&args.pod, &args.review) {
        (Some(path), _) => {
            let pod = parse_document(path, "--pod")?;
            let (body, object) =
                review_for_pod(pod, args).with_context(|| format!("--pod {}", path.display()))?;
            (
                serde_json::to_vec(&body).context("serialising the review")?,
                object,
            )
        }
        (None, Some(path)) => {
            let doc = parse_document(path, "--review")?;
            let object = doc
                .pointer("/request/object")
                .cloned()
                .unwrap_or(Value::Null);
            (
                serde_json::to_vec(&doc).context("serialising the review")?,
                object,
            )
        }
        (None, None) => bail!("give the input with --pod FILE or --review FILE"),
    };

    let input = match (&args.pod, &args.review) {
        (Some(p), _) => format!("--pod {}", p.display()),
        (None, Some(p)) => format!("--review {}", p.display()),
        (None, None) => String::new(),
    };
    let reviewed =
        review_with(&config, &args.bounds.into(), &body).map_err(|e| anyhow!("{input}: {e}"))?;
    let (verdict, stderr) = match &reviewed.decision {
        Decision::Denied(denial) => (Verdict::Denied, Some(format!("denied: {denial}"))),
        // The server would refuse it too, but for a CI run it is broken
        // input, not a policy decision: exit 2.
        Decision::Invalid(m) => bail!("{input}: {m}"),
        Decision::Unchanged(_) | Decision::Patched(_) => (Verdict::Allowed, None),
    };
    let patch = match &reviewed.decision {
        Decision::Patched(p) => p.0.clone(),
        _ => Vec::new(),
    };

    let stdout = match args.output {
        Output::Review => {
            let v: Value =
                serde_json::from_slice(&reviewed.response).context("reading our own response")?;
            pretty(&v)?
        }
        _ if verdict == Verdict::Denied => String::new(),
        Output::Patch => pretty(&patch)?,
        Output::Pod => {
            let mut pod = object;
            json_patch::patch(&mut pod, &patch).context(
                "applying the patch to the pod (a bug: please report it with this input)",
            )?;
            yaml(&pod)
        }
    };
    Ok(Printed {
        verdict,
        stdout,
        stderr,
    })
}

/// The pod as YAML that every reader takes back the same way. Strings are
/// always double-quoted (JSON string syntax is valid YAML): a YAML 1.1 reader
/// such as kubectl's would otherwise turn a plain `yes`, `off` or `1_000`
/// into a boolean or a number.
fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => yaml_list(items, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&yaml_key(key));
        out.push(':');
        yaml_value(value, indent + 2, out);
    }
}

fn yaml_list(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            // A map's first key goes on the dash's line, the rest under it.
            Value::Object(map) if !map.is_empty() => {
                let mut nested = String::new();
                yaml_map(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => yaml_value(other, indent + 2, out),
        }
    }
}

/// Writes `value` after a `key:` or `-` already on the line.
fn yaml_value(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_map(map, indent, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml_list(items, indent, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

/// Keys made only of letters, digits and `-._/` are written plain unless a
/// YAML 1.1 reader could take them for something else; the rest are quoted.
fn yaml_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
        && key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn pretty<T: serde::Serialize>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v).context("printing JSON")?;
    s.push('\n');
    Ok(s)
}

fn read(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
    }
}

/// One YAML or JSON document from a file (or stdin).
fn parse_document(path: &Path, flag: &str) -> Result<Value> {
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
            kind(&value)
        );
    }
    Ok(value)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The AdmissionReview the API server would send for `kubectl create` of
/// this pod, with the namespace filled in as the API server does.
fn review_for_pod(mut pod: Value, args: &MutateArgs) -> Result<(Value, Value)> {
    if let Some(k) = pod.get("kind").and_then(Value::as_str) {
        if k != "Pod" {
            bail!("kind is {k:?}, expected a Pod (pass other objects as an AdmissionReview with --review)");
        }
    }
    let meta = pod
        .as_object_mut()
        .expect("checked to be a mapping")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        bail!("metadata must be a mapping");
    };
    let in_file = meta
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let namespace = match (in_file, &args.namespace) {
        (Some(file), Some(flag)) if &file != flag => {
            bail!("the pod's namespace {file:?} does not match --namespace {flag:?}")
        }
        (Some(ns), _) => ns,
        (None, Some(flag)) => flag.clone(),
        (None, None) => "default".to_owned(),
    };
    meta.insert("namespace".into(), Value::String(namespace.clone()));
    let name = meta.get("name").cloned();
    let mut request = json!({
        "uid": args.uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": "CREATE",
        "dryRun": true,
        "object": pod,
    });
    if let Some(name) = name {
        request["name"] = name;
    }
    let review = json!({"apiVersion": API_V1, "kind": "AdmissionReview", "request": request});
    Ok((review, pod_of(&request)))
}

fn pod_of(request: &Value) -> Value {
    request.get("object").cloned().unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trips_and_quotes_every_string() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "yes", "on": "off", "n": "1_000"},
                "annotations": {"polyaxon.com/persistence": "data: [d]\noutputs: o\n"}},
            "spec": {"containers": [{"name": "main", "command": ["sleep", "3600"],
                "env": [{"name": "X", "value": "off"}, {"name": "E", "value": ""}],
                "resources": {}, "ports": [{"containerPort": 80}]}],
                "volumes": [], "priority": 0, "enableServiceLinks": true, "nodeName": null}
        });
        let text = yaml(&pod);
        for quoted in [
            r#"a: "yes""#,
            r#""on": "off""#,
            r#""n": "1_000""#,
            r#"value: "off""#,
            r#"- "sleep""#,
        ] {
            assert!(text.contains(quoted), "{quoted} in\n{text}");
        }
        assert!(
            text.contains("resources: {}") && text.contains("volumes: []"),
            "{text}"
        );
        let back: Value = serde_yaml::from_str(&text).expect("valid YAML");
        assert_eq!(back, pod, "\n{text}");
    }
}
