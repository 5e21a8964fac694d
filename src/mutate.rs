//! `persistence-webhook mutate`: the served decision, offline. It builds (or
//! reads) an AdmissionReview, calls [`crate::review::review_with`] with the
//! same bounds exactly as the server does, and prints the pod, the patch or the response.
//! A stream of manifests, a `List` or a workload goes to its `stream` room.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::cli::{MutateArgs, Output};
use crate::config::Config;
use crate::manifests;
use crate::review::{review_with, Decision};

mod stream;

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
    /// For stderr: the response's warnings, one `Warning: ...` line each
    /// as `kubectl` prints them, then the denial message, if any.
    pub stderr: Option<String>,
}

/// Runs `mutate`. Errors are usage, input or config errors (exit 2); each
/// names the file or flag to fix.
pub fn run(args: &MutateArgs) -> Result<Printed> {
    let config = load_config(&args.config, "--config")?;

    let (input, body, object) = match (&args.pod, &args.review) {
        (Some(path), _) => {
            let input = format!("--pod {}", path.display());
            let text = read(path).with_context(|| format!("cannot read {input}"))?;
            let docs = manifests::parse(&text).with_context(|| input.clone())?;
            let pod = match <[Value; 1]>::try_from(docs) {
                // One Pod (or an object without a kind): the single-pod
                // output, as it always was.
                Ok([pod]) if pod["kind"].as_str().is_none_or(|k| k == "Pod") => {
                    manifests::require_mapping(&pod).with_context(|| input.clone())?;
                    pod
                }
                Ok([doc]) => return stream::run(&config, args, path, vec![doc]),
                Err(docs) => return stream::run(&config, args, path, docs),
            };
            let (body, pod) = review_for_pod(pod, args).with_context(|| input.clone())?;
            (input, body, pod)
        }
        (None, Some(path)) => {
            let doc = parse_review(path)?;
            let object = doc
                .pointer("/request/object")
                .cloned()
                .unwrap_or(Value::Null);
            let body = serde_json::to_vec(&doc).context("serialising the review")?;
            (format!("--review {}", path.display()), body, object)
        }
        (None, None) => bail!("give the input with --pod FILE or --review FILE"),
    };

    let reviewed =
        review_with(&config, &args.bounds.into(), &body).map_err(|e| anyhow!("{input}: {e}"))?;
    let mut lines: Vec<String> = reviewed.notes.warnings.iter().map(|w| warning(w)).collect();
    let verdict = match &reviewed.decision {
        Decision::Denied(denial) => {
            lines.push(format!("denied: {denial}"));
            Verdict::Denied
        }
        // The server would refuse it too, but for a CI run it is broken
        // input, not a policy decision: exit 2.
        Decision::Invalid(m) => bail!("{input}: {m}"),
        Decision::Unchanged(_) | Decision::Patched(_) => Verdict::Allowed,
    };
    let stderr = (!lines.is_empty()).then(|| lines.join("\n"));
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
            manifests::yaml(&pod)
        }
    };
    Ok(Printed {
        verdict,
        stdout,
        stderr,
    })
}

/// One of the response's warnings as `kubectl` prints it (SPEC §8).
pub(crate) fn warning(text: &str) -> String {
    format!("Warning: {text}")
}

/// `v` as indented JSON with a final newline, as the commands print it.
pub(crate) fn pretty<T: serde::Serialize>(v: &T) -> Result<String> {
    let mut s = serde_json::to_string_pretty(v).context("printing JSON")?;
    s.push('\n');
    Ok(s)
}

pub(crate) fn read(path: &Path) -> std::io::Result<String> {
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
pub(crate) fn load_config(path: &Path, label: &str) -> Result<Config> {
    let text = read(path).with_context(|| format!("cannot read {label} {}", path.display()))?;
    Config::from_yaml(&text).map_err(|e| anyhow!("{label} {}: {e}", path.display()))
}

/// The `--review` document from a file (or stdin): one YAML or JSON mapping.
pub(crate) fn parse_review(path: &Path) -> Result<Value> {
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

/// The AdmissionReview the API server would send for `kubectl create` of
/// this pod, with the namespace filled in as the API server does.
fn review_for_pod(mut pod: Value, args: &MutateArgs) -> Result<(Vec<u8>, Value)> {
    let namespace = crate::dry_run::namespace_of(&pod, args.namespace.as_deref())?;
    let meta = pod
        .as_object_mut()
        .expect("checked to be a mapping")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        bail!("metadata must be a mapping");
    };
    meta.insert("namespace".into(), Value::String(namespace.clone()));
    let body = crate::dry_run::review_body(&pod, &namespace, &args.uid);
    Ok((body, pod))
}
