//! The pure review path on a realistic Pod CREATE (7.8 KB: 2 containers,
//! 1 init container, a projected token volume, managedFields) against a
//! ten-store config, next to the floor any webhook on this stack pays:
//! parsing the body into `serde_json::Value` and writing it back.
//!
//! `cargo bench --bench review` prints criterion's figures for both, then a
//! one-line summary timed with `Instant` in interleaved rounds, so that the
//! ratio review/floor is measured under the same machine load.
//!
//! `data/` holds copies of `../shared/bench/review-pod.json` and
//! `persistence.yaml`, so the bench stands alone. The config is verbatim. The
//! body has one change: the shared capture's `polyaxon-main` container already
//! sets `POLYAXON_RUN_OUTPUTS_PATH` to a path of its own, which SPEC §5 denies
//! (never overwrite an env var of ours). Renaming it to
//! `POLYAXON_RUN_ARTIFACT_DIR` (same length, same byte count) makes the review
//! a patch, which is the work worth measuring:
//! `sed 's/"name":"POLYAXON_RUN_OUTPUTS_PATH"/"name":"POLYAXON_RUN_ARTIFACT_DIR"/'`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use persistence_webhook::{review, Config, Decision};

/// Copied from `../shared/bench/`, with the one rename above.
const BODY: &[u8] = include_bytes!("data/review-pod.json");
const CONFIG: &str = include_str!("data/persistence.yaml");

fn config() -> Config {
    Config::from_yaml(CONFIG).expect("benches/data/persistence.yaml is a valid config")
}

fn review_once(config: &Config, body: &[u8]) -> Vec<u8> {
    review(config, body)
        .expect("the bench body is an AdmissionReview")
        .response
}

fn floor(body: &[u8]) -> Vec<u8> {
    let value: serde_json::Value = serde_json::from_slice(body).expect("the bench body is JSON");
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

/// The shared capture as it is, which SPEC §5 denies: the cost of that path,
/// which is what a load test with `../shared/bench/review-pod.json` measures.
fn shared_body() -> Vec<u8> {
    let body = std::str::from_utf8(BODY).expect("the bench body is UTF-8");
    let shared = body.replacen(
        "\"name\":\"POLYAXON_RUN_ARTIFACT_DIR\"",
        "\"name\":\"POLYAXON_RUN_OUTPUTS_PATH\"",
        1,
    );
    assert_ne!(shared, body, "the renamed env var is in the bench body");
    shared.into_bytes()
}

/// The bench must measure real work: a patch, not an early skip or denial.
fn check_patched(config: &Config) {
    let reviewed = review(config, BODY).expect("the bench body is an AdmissionReview");
    match &reviewed.decision {
        Decision::Patched(patch) => assert!(!patch.0.is_empty(), "an empty patch"),
        other => panic!("the bench review must be patched, got {other:?}"),
    }
    let shared = review(config, &shared_body()).expect("the shared body is an AdmissionReview");
    assert!(
        matches!(shared.decision, Decision::Denied(_)),
        "the shared body was expected to be denied (SPEC §5), got {:?}",
        shared.decision
    );
}

fn criterion_benches(c: &mut Criterion, config: &Config) {
    let mut group = c.benchmark_group("review-pod");
    group.throughput(Throughput::Bytes(BODY.len() as u64));
    group.bench_function("review", |b| {
        b.iter(|| review_once(config, black_box(BODY)))
    });
    group.bench_function("floor (Value parse + to_vec)", |b| {
        b.iter(|| floor(black_box(BODY)))
    });
    let shared = shared_body();
    group.bench_function("review (shared body verbatim: denied)", |b| {
        b.iter(|| review_once(config, black_box(&shared)))
    });
    group.finish();
}

fn time(iterations: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Review and floor timed in alternating rounds; medians of each and of the
/// per-round ratio, as the summary line.
fn summary(config: &Config) -> String {
    const ROUNDS: usize = 21;
    const ITERATIONS: u32 = 2_000;
    let mut review_ns = Vec::with_capacity(ROUNDS);
    let mut floor_ns = Vec::with_capacity(ROUNDS);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let r = time(ITERATIONS, || {
            black_box(review_once(config, black_box(BODY)));
        });
        let f = time(ITERATIONS, || {
            black_box(floor(black_box(BODY)));
        });
        let (r, f) = (r.as_nanos() as f64, f.as_nanos() as f64);
        review_ns.push(r);
        floor_ns.push(f);
        ratios.push(r / f);
    }
    format!(
        "summary: review {:.2} µs/op, floor {:.2} µs/op, ratio review/floor {:.3} \
         (Instant, medians of {ROUNDS} interleaved rounds of {ITERATIONS} iterations, \
         {} byte body, measured before criterion on a settled heap)",
        median(review_ns) / 1e3,
        median(floor_ns) / 1e3,
        median(ratios),
        BODY.len()
    )
}

/// glibc malloc starts with a 128 KiB trim threshold, so a process that has
/// never freed a large block gives memory back to the kernel at the end of
/// nearly every iteration here, and both figures depend on whatever ran
/// before (measured: review 23-40 µs, floor 33-53 µs on the same build).
/// Freeing one mmapped block raises the thresholds, as in any long-running
/// server, and makes the figures repeatable.
fn settle_allocator() {
    drop(black_box(vec![1u8; 4 << 20]));
}

fn main() {
    let config = config();
    check_patched(&config);
    settle_allocator();
    // Criterion's analysis leaves the heap fragmented, which slows the floor
    // (many small allocations) by up to a third: time the summary first, on a
    // clean heap, and print it last. `cargo test --benches` runs each
    // benchmark once and skips it.
    let summary = std::env::args()
        .any(|a| a == "--bench")
        .then(|| summary(&config));
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &config);
    criterion.final_summary();
    if let Some(line) = summary {
        println!("{line}");
    }
}
