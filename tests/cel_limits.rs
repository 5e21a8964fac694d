//! The API server's CEL cost budget against the policies, measured: the
//! figures `docs/src/operators/policy-mode.md` gives for
//! `MAX_STORES_PER_NAMESPACE` (a pod of 3 containers mutated with 200
//! volume stores and refused with 250; of 8 containers with 100, not 150;
//! of 3 containers with 200 keyed S3 stores, not 400) and for the namespace
//! classes (330 admitted). Each config's policies are made with the store
//! limit lifted, applied alone (no webhook), and one pod is created as a
//! server dry run: mutated, or refused for its cost.
//!
//! Ignored, and not an `e2e*` file, so `.ci/run` does not run it (it
//! applies policies of megabytes, one after another); run it on kube-local:
//!
//! ```sh
//! eval "$(tests/cluster/kube-local start)"
//! cargo test --locked --test cel_limits -- --ignored --nocapture
//! ```

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use cluster::*;
use persistence_webhook_core::policy::{generate_with_store_limit, Options};
use persistence_webhook_core::Config;
use serde_json::{json, Value};

const NS: &str = "pw-cel-limits";
const NAME: &str = "pw-cel-limits";

fn volumes(n: usize) -> String {
    let mut y = String::from("data:\n");
    for i in 0..n {
        y.push_str(&format!("  d{i}: {{mountPath: /d/{i}}}\n"));
    }
    y
}

fn keyed_s3(n: usize) -> String {
    let mut y = String::from("data:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  s{i}: {{store: s3, bucket: \"s3://bucket-{i}\", secret: s{i}, secretKey: k{i}.json}}\n"
        ));
    }
    y
}

/// One store scoped to each of `n` namespaces (the pod's among them): `n`
/// namespace classes besides class 0.
fn classes(n: usize) -> String {
    let mut y = String::from("data:\n");
    for i in 0..n {
        let ns = if i == 0 {
            NS.to_owned()
        } else {
            format!("team-{i}")
        };
        y.push_str(&format!(
            "  d{i}: {{mountPath: /d/{i}, namespaces: [{ns}]}}\n"
        ));
    }
    y
}

fn pod(containers: usize) -> String {
    let list: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("c{i}"), "image": "busybox:1.36"}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cost"}, "spec": {"containers": list}})
        .to_string()
}

/// What the API server did with the pod.
#[derive(Debug, PartialEq)]
enum Outcome {
    Mutated,
    OverBudget,
}

/// Applies the policies of `config`, creates the pod of `containers`
/// containers, and removes the policies again.
fn measure(config: &str, containers: usize) -> Outcome {
    let config = Config::from_yaml(config).expect("a valid config");
    let options = Options {
        name: NAME.to_owned(),
        ..Options::default()
    };
    let objects = generate_with_store_limit(&config, &options, usize::MAX)
        .expect("the generator writes it (past the store limit)");
    let stream: Vec<String> = objects.iter().map(Value::to_string).collect();
    delete_policies(NAME);
    common::eventually_blocking("no policy of ours mutates", || {
        let (ok, out, _) = create(NS, &pod(1), DryRun::Yes);
        ok && !out.contains("POLYAXON_RUN_DATA_PATHS")
    });
    kubectl_ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&stream.join("\n---\n")),
    );
    // In effect once the API server has the binding: a pod is mutated or
    // refused, no longer stored as it is.
    common::eventually_blocking("the policy is in effect", || {
        let (ok, out, _) = create(NS, &pod(containers), DryRun::Yes);
        !ok || out.contains("POLYAXON_RUN_DATA_PATHS")
    });
    let (ok, out, err) = create(NS, &pod(containers), DryRun::Yes);
    delete_policies(NAME);
    if ok {
        assert!(out.contains("POLYAXON_RUN_DATA_PATHS"), "{out}");
        Outcome::Mutated
    } else {
        assert!(
            err.contains("cost") || err.contains("budget"),
            "refused for another reason than the CEL cost: {err}"
        );
        Outcome::OverBudget
    }
}

#[test]
#[ignore = "a measurement on kube-apiserver (KUBECONFIG): tests/cluster/kube-local"]
fn the_cel_cost_figures_of_the_docs() {
    namespace(NS, true);
    let cases: [(&str, String, usize, Outcome); 7] = [
        (
            "200 volume stores, 3 containers",
            volumes(200),
            3,
            Outcome::Mutated,
        ),
        (
            "250 volume stores, 3 containers",
            volumes(250),
            3,
            Outcome::OverBudget,
        ),
        (
            "100 volume stores, 8 containers",
            volumes(100),
            8,
            Outcome::Mutated,
        ),
        (
            "150 volume stores, 8 containers",
            volumes(150),
            8,
            Outcome::OverBudget,
        ),
        (
            "200 keyed S3 stores, 3 containers",
            keyed_s3(200),
            3,
            Outcome::Mutated,
        ),
        (
            "400 keyed S3 stores, 3 containers",
            keyed_s3(400),
            3,
            Outcome::OverBudget,
        ),
        (
            "330 namespace classes, 3 containers",
            classes(330),
            3,
            Outcome::Mutated,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, config, containers, want) in cases {
        let got = measure(&config, containers);
        println!("{what}: {got:?}");
        if got != want {
            wrong.push(format!("{what}: {got:?}, the docs say {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
