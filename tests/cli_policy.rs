//! `persistence-webhook policy` (SPEC §10) from the command line: the
//! objects printed for the example config, byte for byte against
//! `tests/policy-goldens/` (`UPDATE_POLICY_GOLDENS=1` rewrites them after
//! a change the e2e test has proven on an API server), and the exit
//! statuses: 1 for a config the policies cannot express, 2 for a config
//! that is not valid.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

fn bin() -> Command {
    Command::cargo_bin("persistence-webhook").expect("the binary is built")
}

/// `persistence-webhook policy --config <config>`, run to its end.
fn policy(config: &Path) -> Output {
    bin()
        .args(["policy", "--config"])
        .arg(config)
        .output()
        .expect("policy runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `got` is byte for byte the file `rel` (of the repository), which
/// `UPDATE_POLICY_GOLDENS=1` rewrites; `what` says what it should be.
fn same_as_file(rel: &str, got: &str, what: &str) {
    let path = root().join(rel);
    if std::env::var_os("UPDATE_POLICY_GOLDENS").is_some() {
        std::fs::write(&path, got).expect("written");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_POLICY_GOLDENS=1 writes it)",
            path.display()
        )
    });
    assert!(
        got == want,
        "{rel} is not {what} (UPDATE_POLICY_GOLDENS=1 rewrites it)"
    );
}

#[test]
fn the_example_config_compiles_into_the_golden_objects() {
    for (config, golden) in [
        ("examples/persistence.yaml", "example.yaml"),
        ("examples/persistence-sdk.yaml", "example-sdk.yaml"),
    ] {
        let out = policy(&root().join(config));
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = String::from_utf8(out.stdout).expect("utf-8");
        same_as_file(
            &format!("tests/policy-goldens/{golden}"),
            &got,
            &format!("the objects {config} compiles into"),
        );
        for kind in [
            "kind: \"MutatingAdmissionPolicy\"",
            "kind: \"ValidatingAdmissionPolicy\"",
            "kind: \"MutatingAdmissionPolicyBinding\"",
            "kind: \"ValidatingAdmissionPolicyBinding\"",
        ] {
            assert!(got.contains(kind), "{config}: no {kind}");
        }
    }
}

#[test]
fn exit_statuses_say_what_went_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "a".repeat(60);
    let refused = dir.path().join("refused.yaml");
    std::fs::write(
        &refused,
        format!("data:\n  {long}x: {{mountPath: /d/1}}\n  {long}y: {{mountPath: /d/2}}\n"),
    )
    .expect("written");
    let out = policy(&refused);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("data store \"{long}x\"")), "{err}");
    assert!(out.stdout.is_empty(), "nothing printed when refused");

    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(&invalid, "data:\n  d1: {mountPath: relative}\n").expect("written");
    let out = policy(&invalid);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("d1"), "{err}");
    assert!(
        err.contains("data.d1.mountPath") && err.contains("must be an absolute path"),
        "the field and what is wrong with it: {err}"
    );
}

/// The hybrid install's copies of what the core writes, each byte for
/// byte (`UPDATE_POLICY_GOLDENS=1` rewrites them): the overlay's policies,
/// `policy --hybrid` of the base's example config; the webhook
/// registration's condition in the overlay's patch and in the chart,
/// the core's `hybrid::webhook_condition()`.
#[test]
fn the_hybrid_installs_copies_are_the_cores() {
    use persistence_webhook_core::policy::hybrid;

    let compare = |rel: &str, got: &str| {
        same_as_file(
            rel,
            got,
            "what the core writes (see its header for how it is made)",
        )
    };

    let out = bin()
        .args(["policy", "--hybrid", "--config"])
        .arg(root().join("manifests/base/persistence.yaml"))
        .output()
        .expect("policy runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policies = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        policies.contains(hybrid::POLICY_CONDITION),
        "no {}",
        hybrid::POLICY_CONDITION
    );
    compare("manifests/overlays/hybrid/policies.yaml", &policies);

    // JSON strings are YAML double-quoted scalars.
    let condition = hybrid::webhook_condition();
    let field = |key: &str| serde_json::to_string(&condition[key]).expect("a string");
    let (name, expression) = (field("name"), field("expression"));
    let header = "# Written by the core (persistence_webhook_core::policy::hybrid::webhook_condition);\n\
                  # tests/cli_policy.rs compares it. The webhook's pods in a hybrid install: the\n\
                  # selection annotation, or an outputs sub-path that may need the admission uid.\n";
    compare(
        "manifests/overlays/hybrid/webhook-match-condition.yaml",
        &format!(
            "{header}- op: add\n  path: /webhooks/0/matchConditions/-\n  value:\n    name: {name}\n    expression: {expression}\n"
        ),
    );
    compare(
        "charts/persistence-webhook/files/hybrid-match-condition.yaml",
        &format!("{header}- name: {name}\n  expression: {expression}\n"),
    );
}
