//! A review costs what its pod selects, not what the config holds (SPEC §5
//! "Bounded"): instructions per review of `data/review-pod.json` (which
//! selects `data1` and `outputs1`) against the bench's ten-store config and
//! against the same config with 9,990 more stores (volume and bucket stores,
//! a third of them limited to other namespaces), generated here.
//!
//! `cargo bench --bench stores` runs itself under valgrind (cachegrind, no
//! cache simulation: deterministic) for two numbers of reviews per config
//! and prints the marginal instructions per review and their ratio. Without
//! valgrind it says so and prints nothing else.

use std::hint::black_box;
use std::process::Command;

use persistence_webhook::{review, Config, Decision};

const BODY: &[u8] = include_bytes!("data/review-pod.json");
const CONFIG: &str = include_str!("data/persistence.yaml");

/// [`CONFIG`] and `extra` more stores.
fn config_text(extra: usize) -> String {
    let mut data = String::new();
    let mut outputs = String::new();
    for i in 0..extra {
        let scope = if i % 3 == 2 {
            format!(", namespaces: [team-{}]", i % 100)
        } else {
            String::new()
        };
        let line = match i % 4 {
            0 => format!("    u-{i:05}: {{mountPath: /u/{i}, existingClaim: claim-{i}{scope}}}\n"),
            1 => format!(
                "    u-{i:05}: {{store: s3, bucket: \"s3://bucket-{i}\", secret: s-{i}, secretKey: key-{i}.json{scope}}}\n"
            ),
            2 => format!("    u-{i:05}: {{mountPath: /u/{i}, hostPath: /mnt/u/{i}{scope}}}\n"),
            _ => {
                outputs.push_str(&format!(
                    "    v-{i:05}: {{mountPath: /v/{i}, existingClaim: out-{i}{scope}}}\n"
                ));
                continue;
            }
        };
        data.push_str(&line);
    }
    // The bench config's sections, each followed by its generated stores.
    let mut text = String::new();
    for line in CONFIG.lines() {
        text.push_str(line);
        text.push('\n');
        if line == "  data:" {
            text.push_str(&data);
        }
        if line == "  outputs:" {
            text.push_str(&outputs);
        }
    }
    text
}

fn config(extra: usize) -> Config {
    Config::from_yaml(&config_text(extra)).expect("a generated config is valid")
}

/// Instructions of `self --reviews EXTRA N` under cachegrind.
fn instructions(extra: usize, reviews: usize) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(exe)
        .args(["--reviews", &extra.to_string(), &reviews.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("I refs:") || l.contains("I   refs:"))?;
    line.rsplit(' ').next()?.replace(',', "").parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--reviews") {
        // The child: load the config, then review the body N times.
        let extra: usize = args[i + 1].parse().expect("a number of stores");
        let n: usize = args[i + 2].parse().expect("a number of reviews");
        let config = config(extra);
        for _ in 0..n {
            let reviewed = review(&config, black_box(BODY)).expect("an AdmissionReview");
            assert!(matches!(reviewed.decision, Decision::Patched(_)));
            black_box(reviewed);
        }
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` only checks the configs.
        for extra in [0, 9_990] {
            let config = config(extra);
            let reviewed = review(&config, BODY).expect("an AdmissionReview");
            assert!(matches!(reviewed.decision, Decision::Patched(_)));
        }
        return;
    }
    let (n1, n2) = (200, 1_200);
    let mut per = Vec::new();
    for extra in [0, 9_990] {
        let (Some(a), Some(b)) = (instructions(extra, n1), instructions(extra, n2)) else {
            println!("stores: valgrind not found or failed; nothing measured");
            return;
        };
        let per_review = (b - a) as f64 / (n2 - n1) as f64;
        println!(
            "stores: {:>6} stores in the config: {per_review:>9.0} instructions per review (cachegrind, ({b} - {a}) / {})",
            10 + extra,
            n2 - n1
        );
        per.push(per_review);
    }
    println!(
        "stores: ratio 10,000 / 10 stores = {:.3} (the same selected stores: data1, outputs1)",
        per[1] / per[0]
    );
}
