//! Peak heap of one review, counted by a global allocator (deterministic,
//! unlike RSS): what the memory bound's per-review terms rest on
//! (docs/src/reference/hardening.md, "Memory bound").
//!
//! `cargo bench --bench memory` prints one line per case: the body's size,
//! the patch's (its JSON, before base64), the peak heap the review added
//! over the body it was given (the parse, the decision, the patch and the
//! response together), and that peak over the body and over the patch.
//! The cases are the soak test's largest inputs (`tests/soak.rs`): the
//! largest patch the default bounds allow, the largest body, and a body of
//! tiny entries, the worst ratio of view to JSON.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use persistence_webhook::{review, Config, Decision};
use serde_json::{json, Value};

/// Counts live and peak bytes on top of the system allocator.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Counted as the old and the new block both live, as a copy is.
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The soak test's review (`tests/fixtures/defaults/review.json`) and config.
const REVIEW: &[u8] = include_bytes!("../tests/fixtures/defaults/review.json");
const CONFIG: &str =
    "data: {data1: {mountPath: /data/1}}\noutputs: {out: {mountPath: /outputs/x}}\n";

fn with_containers(containers: Vec<Value>) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(REVIEW).expect("fixture");
    review["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    serde_json::to_vec(&review).expect("JSON")
}

/// `tests/soak.rs`'s `bare_containers(1_200, None)`: the largest patch the
/// default bounds allow with its config.
fn largest_patch() -> Vec<u8> {
    with_containers(
        (0..1_200)
            .map(|i| json!({"name": format!("c{i}"), "image": "i"}))
            .collect(),
    )
}

/// `tests/soak.rs`'s `large_review(4 MiB - 64 KiB)`: three containers of
/// 200-byte env vars.
fn largest_body() -> Vec<u8> {
    let bytes = 4 * 1024 * 1024 - 64 * 1024;
    let value = "x".repeat(200);
    let per_container = bytes / 3 / 230;
    let env: Vec<Value> = (0..per_container)
        .map(|i| json!({"name": format!("VAR_{i}"), "value": value}))
        .collect();
    with_containers(
        (0..3)
            .map(|i| json!({"name": format!("c{i}"), "image": "busybox", "env": env}))
            .collect(),
    )
}

/// A body of tiny entries, about 3.9 MB: one container with 300,000
/// `{"name":"A"}` env vars (or as many env vars of ours, tiny mounts,
/// mounts of our volumes, or volumes), or 300,000
/// tiny containers (`{}`, `{"name":"a"}`, `{"env":[]}`), the worst ratios of
/// view to JSON.
fn tiny_entries(what: &str) -> Vec<u8> {
    // 100-byte names: fewer of them, about the same body.
    let n = if what == "kept-mounts-escaped-long" {
        60_000
    } else {
        300_000
    };
    let mut review: Value = serde_json::from_slice(REVIEW).expect("fixture");
    let entry = |i: usize| match what {
        "env" => json!({"name": "A"}),
        "kept-env" => json!({"name": "AWS_REGION"}),
        "mounts" => json!({"name": "A", "mountPath": "/"}),
        "kept-mounts" => json!({"name": "pw-a", "mountPath": "/m"}),
        "kept-mounts-distinct" => json!({"name": format!("pw-{i}"), "mountPath": format!("/m{i}")}),
        "kept-mounts-shortest" => json!({"name": "pw-", "mountPath": ""}),
        "kept-mounts-sub-ro" => {
            json!({"name": "pw-", "mountPath": "", "subPath": "", "readOnly": i.is_multiple_of(2)})
        }
        "kept-mounts-subpath" => json!({"name": "pw-", "mountPath": "", "subPath": ""}),
        "kept-mounts-escaped" => json!({"name": format!("pw-\"{i}"), "mountPath": "/m\n"}),
        "kept-mounts-escaped-long" => {
            json!({"name": format!("pw-{}\t{i}", "x".repeat(100)), "mountPath": "/m"})
        }
        "empty-containers" => json!({}),
        "named-containers" => json!({"name": "a"}),
        "env-containers" => json!({"env": []}),
        "mount-containers" => json!({"volumeMounts": [{"name": "pw-", "mountPath": ""}]}),
        _ => json!({"name": format!("v{i}")}),
    };
    let list: Vec<Value> = (0..n).map(entry).collect();
    let pod = &mut review["request"]["object"]["spec"];
    match what {
        "env" | "kept-env" => pod["containers"] = json!([{"name": "c", "env": list}]),
        "mounts"
        | "kept-mounts"
        | "kept-mounts-distinct"
        | "kept-mounts-shortest"
        | "kept-mounts-sub-ro"
        | "kept-mounts-subpath"
        | "kept-mounts-escaped"
        | "kept-mounts-escaped-long" => {
            pod["containers"] = json!([{"name": "c", "volumeMounts": list}])
        }
        "volumes" => pod["volumes"] = Value::Array(list),
        _ => pod["containers"] = Value::Array(list),
    }
    serde_json::to_vec(&review).expect("JSON")
}

/// [`tiny_entries`]`(what)` (escaped names) with every kept mount's keys
/// written with an escape too (`"n\u0061me"`): the values cannot be found
/// in the body after their keys, so they are copied.
fn escaped_keys(what: &str, n: usize) -> Vec<u8> {
    let body = String::from_utf8(tiny_entries(what)).expect("UTF-8");
    let body = body
        .replace(r#""mountPath":"/m"#, r#""mountP\u0061th":"/m"#)
        .replace(r#""name":"pw-"#, r#""n\u0061me":"pw-"#);
    assert_eq!(
        body.matches(r#""n\u0061me""#).count(),
        n,
        "every name key escaped"
    );
    body.into_bytes()
}

/// The review's peak heap over what was live before it, and its patch's size.
fn measure(config: &Config, body: &[u8]) -> (usize, usize, &'static str) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let reviewed = review(config, black_box(body)).expect("an AdmissionReview");
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let patch = match &reviewed.decision {
        Decision::Patched(_) => {
            let response: Value = serde_json::from_slice(&reviewed.response).expect("JSON");
            let b64 = response["response"]["patch"].as_str().expect("a patch");
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
                .len()
        }
        _ => 0,
    };
    (peak, patch, reviewed.decision.outcome().as_str())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` only builds it.
        return;
    }
    let config = Config::from_yaml(CONFIG).expect("the soak config is valid");
    let cases = [
        ("largest-patch (1,200 bare containers)", largest_patch()),
        ("largest-body (4 MiB - 64 KiB of env)", largest_body()),
        ("tiny-entries (env {\"name\":\"A\"})", tiny_entries("env")),
        ("tiny-entries (env of ours, kept)", tiny_entries("kept-env")),
        ("tiny-entries (volumeMounts)", tiny_entries("mounts")),
        (
            "tiny-entries (mounts of ours, kept)",
            tiny_entries("kept-mounts"),
        ),
        (
            "kept mounts (distinct pw-<i> at /m<i>)",
            tiny_entries("kept-mounts-distinct"),
        ),
        (
            "kept mounts (shortest, pw- at \"\")",
            tiny_entries("kept-mounts-shortest"),
        ),
        (
            "kept mounts (shortest + subPath)",
            tiny_entries("kept-mounts-subpath"),
        ),
        (
            "kept mounts (+ subPath + readOnly)",
            tiny_entries("kept-mounts-sub-ro"),
        ),
        (
            "kept mounts (escaped name and path)",
            tiny_entries("kept-mounts-escaped"),
        ),
        (
            "kept mounts (escaped 100-byte names)",
            tiny_entries("kept-mounts-escaped-long"),
        ),
        (
            "kept mounts (escaped keys and values)",
            escaped_keys("kept-mounts-escaped", 300_000),
        ),
        (
            "kept mounts (escaped keys, 100-byte names)",
            escaped_keys("kept-mounts-escaped-long", 60_000),
        ),
        ("tiny-entries (volumes)", tiny_entries("volumes")),
        (
            "tiny-entries (containers {})",
            tiny_entries("empty-containers"),
        ),
        (
            "tiny-entries (containers {\"name\":\"a\"})",
            tiny_entries("named-containers"),
        ),
        (
            "tiny-entries (containers {\"env\":[]})",
            tiny_entries("env-containers"),
        ),
        (
            "kept mounts (one per container)",
            tiny_entries("mount-containers"),
        ),
    ];
    for (label, body) in cases {
        let (peak, patch, outcome) = measure(&config, &body);
        let mib = |b: usize| b as f64 / 1048576.0;
        let over_patch = if patch > 0 {
            format!("{:.2}", peak as f64 / patch as f64)
        } else {
            "-".to_owned()
        };
        println!(
            "memory: {label:<42} {outcome:<8} body {:>6.2} MiB, patch {:>6.3} MiB, review peak {:>6.2} MiB = {:.2} x body, {over_patch} x patch",
            mib(body.len()),
            mib(patch),
            mib(peak),
            peak as f64 / body.len() as f64,
        );
    }
}
