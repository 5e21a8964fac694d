//! Every saved fuzz crash in `tests/fuzz_regressions/` replayed by
//! `cargo test`, through the same logic as its target in `fuzz/` and the
//! invariants of the one SPEC oracle (`core/tests/model/spec.rs`):
//!
//! - `review_bytes-*`: the bytes as a review body; an answer must be a JSON
//!   AdmissionReview echoing the uid it reports.
//! - `config_yaml-*`: the bytes (lossily) as a config; one it accepts must
//!   review a plain pod in `default` and `team-a` with a patch that applies.
//! - `review_structured-*`: `arbitrary` bytes mean something only to the
//!   fuzz crate's generator, so each needs its readable reproduction,
//!   `readable/<file name>.json` (an AdmissionReview against the golden
//!   fixtures' config): every invariant of a patched answer must hold.
//!
//! A file of another name fails the test, so no saved input is skipped.

#[path = "../core/tests/model/spec.rs"]
mod spec;

use std::path::{Path, PathBuf};

use persistence_webhook::review::{review, Decision};
use persistence_webhook::Config;
use serde_json::{json, Value};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

fn fixtures_config() -> Config {
    Config::from_yaml(include_str!("fixtures/config.yaml")).expect("the golden config is valid")
}

/// `fuzz_targets/review_bytes.rs`.
fn review_bytes(body: &[u8]) -> Result<(), String> {
    if let Ok(reviewed) = review(&fixtures_config(), body) {
        let out: Value = serde_json::from_slice(&reviewed.response)
            .map_err(|e| format!("the response is not JSON: {e}"))?;
        if out["kind"] != "AdmissionReview" || out["response"]["uid"] != reviewed.subject.uid {
            return Err(format!("not an AdmissionReview echoing the uid: {out}"));
        }
    }
    Ok(())
}

/// `fuzz_targets/config_yaml.rs`.
fn config_yaml(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = Config::from_yaml(&text) else {
        return Ok(());
    };
    let pod = json!({
        "metadata": {"name": "p", "annotations": {}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    });
    for namespace in ["default", "team-a"] {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": namespace, "operation": "CREATE", "object": pod
            }
        });
        let reviewed = review(&config, body.to_string().as_bytes())
            .map_err(|e| format!("a well-formed review is refused: {e}"))?;
        if let Decision::Patched(p) = &reviewed.decision {
            let patch = serde_json::to_value(p).map_err(|e| e.to_string())?;
            spec::apply(&pod, &patch).map_err(|e| format!("{namespace}: {e}"))?;
        }
    }
    Ok(())
}

/// `fuzz_targets/review_structured.rs`'s checks, on the readable reproduction.
fn review_structured(name: &str) -> Result<(), String> {
    let readable = dir().join("readable").join(format!("{name}.json"));
    let text = std::fs::read(&readable)
        .map_err(|e| format!("no readable reproduction {}: {e}", readable.display()))?;
    let request: Value = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    let config = fixtures_config();
    let reviewed = review(&config, &text).map_err(|e| format!("refused: {e}"))?;
    let out: Value = serde_json::from_slice(&reviewed.response).map_err(|e| e.to_string())?;
    spec::check_envelope(&request["apiVersion"], &request["request"]["uid"], &out)?;
    let Decision::Patched(_) = &reviewed.decision else {
        // A denial or no change is a fine answer; the crash was in a patch.
        return match &reviewed.decision {
            Decision::Unchanged(_) => spec::check_unchanged(&out),
            _ => match out["response"]["allowed"] == false {
                true => Ok(()),
                false => Err(format!("a refusal that is allowed: {out}")),
            },
        };
    };
    let pod = &request["request"]["object"];
    let patch = spec::wire_patch(&out)?;
    let patched = spec::apply(pod, &patch)?;
    spec::check_no_new_duplicates(pod, &patched)?;
    let mut again = request.clone();
    again["request"]["object"] = patched;
    let again = review(&config, again.to_string().as_bytes()).map_err(|e| e.to_string())?;
    match again.decision {
        Decision::Unchanged(_) => Ok(()),
        other => Err(format!("admitting the patched pod again: {other:?}")),
    }
}

#[test]
fn every_saved_fuzz_crash_is_replayed_and_keeps_the_invariants() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir()).expect("tests/fuzz_regressions") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 name")
            .to_owned();
        if path.is_dir() || name == "README.md" {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable");
        let result = if name.starts_with("review_bytes-") {
            review_bytes(&bytes)
        } else if name.starts_with("config_yaml-") {
            config_yaml(&bytes)
        } else if name.starts_with("review_structured-") {
            review_structured(&name)
        } else {
            Err("not named <target>-<short-name> for a known target".to_owned())
        };
        replayed += 1;
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(replayed > 0, "no saved input found in {}", dir().display());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{replayed} saved fuzz input(s) replayed");
}
