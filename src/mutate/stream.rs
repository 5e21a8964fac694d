//! `mutate` on what a repository holds (SPEC §6): a stream of documents or a
//! `List`, where each Pod and each workload's pod template is decided by
//! [`crate::offline::dry_run`] and every other object passes through untouched. The
//! stream comes out in its order; every denial is reported with its
//! position, kind and name.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::{warning, Printed, Verdict};
use super::{MutateArgs, Output};
use crate::config::Config;
use crate::offline::dry_run::{decide_all, Decided, Setting};
use crate::offline::io::pretty;
use crate::offline::manifests::{self, Position};
use crate::review::Decision;

/// Decides every object of `docs` (read from `--pod path`) and prints the
/// stream, or the patches or reviews as a JSON list.
pub(super) fn run(
    config: &Config,
    args: &MutateArgs,
    path: &Path,
    mut docs: Vec<Value>,
) -> Result<Printed> {
    let input = format!("--pod {}", path.display());
    if docs.is_empty() {
        bail!("{input}: no object in it");
    }
    let setting = Setting {
        config,
        bounds: args.bounds.into(),
        namespace: args.namespace.as_deref(),
        uid: &args.uid,
    };
    let decided = decide_all(&setting, &docs).with_context(|| input.clone())?;

    let mut lines = Vec::new();
    let mut denied = false;
    let mut entries = Vec::new();
    for (at, d) in &decided {
        for w in &d.warnings {
            lines.push(format!("{at} ({}): {}", d.label(), warning(w)));
        }
        if let Decision::Denied(denial) = &d.decision {
            denied = true;
            lines.push(format!("{at} ({}): denied: {denial}", d.label()));
        } else {
            *manifests::object_mut(&mut docs, *at)? = d.object.clone();
        }
        entries.push(entry(*at, d, args.output)?);
    }
    let stdout = match args.output {
        Output::Pod => manifests::write(&docs),
        Output::Patch | Output::Review => pretty(&entries)?,
    };
    Ok(Printed {
        verdict: if denied {
            Verdict::Denied
        } else {
            Verdict::Allowed
        },
        stdout,
        stderr: (!lines.is_empty()).then(|| lines.join("\n")),
    })
}

/// One entry of `--output patch|review`.
fn entry(at: Position, d: &Decided, output: Output) -> Result<Value> {
    let mut e = json!({
        "document": at.document,
        "kind": d.kind,
        "namespace": d.namespace,
        "name": d.name,
        "outcome": d.decision.outcome().as_str(),
    });
    if let Some(item) = at.item {
        e["item"] = json!(item);
    }
    if let Some(t) = d.template {
        e["template"] = json!(t);
    }
    if let Some(reason) = d.decision.reason() {
        e["reason"] = json!(reason.as_str());
    }
    match output {
        Output::Review => {
            e["review"] = serde_json::from_slice(&d.response).context("reading our own response")?
        }
        _ => e["patch"] = d.patch.clone(),
    }
    Ok(e)
}
