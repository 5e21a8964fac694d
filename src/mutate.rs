//! `persistence-webhook mutate`: the served decision, offline. It builds (or
//! reads) an AdmissionReview, calls [`crate::review::review_with`] with the
//! same bounds exactly as the server does, and prints the pod, the patch or the response.
//! A stream of manifests, a `List` or a workload goes to its `stream` room.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::flags::{BoundsArgs, DEFAULT_UID};
use crate::offline::io::{load_config, parse_review, pretty, read};
use crate::offline::manifests;
use crate::review::{review_with, Decision};

mod stream;

/// Flags of `mutate`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["pod", "review"]))]
pub struct MutateArgs {
    /// The persistence config (YAML, with or without the top-level `persistence:` key).
    #[arg(long, value_name = "FILE", env = "PERSISTENCE_WEBHOOK_CONFIG")]
    pub config: PathBuf,

    /// A pod manifest, YAML or JSON (`-` reads stdin); or manifests as a
    /// repository holds them: a YAML stream or a `List` of Pods, Jobs,
    /// CronJobs, Deployments, StatefulSets, DaemonSets, ReplicaSets (their
    /// pod templates are mutated) and other kinds (passed through).
    #[arg(long, short = 'f', visible_alias = "file", value_name = "FILE")]
    pub pod: Option<PathBuf>,

    /// An AdmissionReview request, JSON or YAML (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub review: Option<PathBuf>,

    /// What to print: the mutated pod (YAML), the JSON Patch, or the
    /// AdmissionReview response. For a stream: the stream, or a JSON list
    /// with one entry per Pod or workload.
    #[arg(long, value_enum, default_value_t = Output::Pod)]
    pub output: Output,

    /// Namespace for a pod whose manifest has none (default: `default`, as kubectl).
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,

    /// Admission uid for a `--pod` input; a generateName pod's outputs
    /// sub-path ends with it.
    #[arg(long, value_name = "UID", default_value = DEFAULT_UID)]
    pub uid: String,

    /// The bounds on one review, as `serve` applies them.
    #[command(flatten)]
    pub bounds: BoundsArgs,
}

/// `mutate --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The pod after the patch, as YAML.
    Pod,
    /// The JSON Patch array (`[]` when nothing changes).
    Patch,
    /// The AdmissionReview response JSON, as the API server would receive it.
    Review,
}

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
        Decision::Patched(p) => p.patch().0.clone(),
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

/// The AdmissionReview the API server would send for `kubectl create` of
/// this pod, with the namespace filled in as the API server does.
fn review_for_pod(mut pod: Value, args: &MutateArgs) -> Result<(Vec<u8>, Value)> {
    let namespace = crate::offline::dry_run::namespace_of(&pod, args.namespace.as_deref())?;
    let meta = pod
        .as_object_mut()
        .expect("checked to be a mapping")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        bail!("metadata must be a mapping");
    };
    meta.insert("namespace".into(), Value::String(namespace.clone()));
    let body = crate::offline::dry_run::review_body(&pod, &namespace, &args.uid);
    Ok((body, pod))
}
