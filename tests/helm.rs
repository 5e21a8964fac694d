//! The Helm chart (`charts/persistence-webhook`) without a cluster: its
//! rendering for each certificate mode and for monitoring on and off against
//! checked-in goldens, the values it refuses (schema and the chart's own
//! checks, each message naming the value), and parity with the kustomize
//! manifests (`charts/parity.yaml` lists the only differences allowed).
//!
//! Ignored by default (they need the pinned helm, `HELM`, and kubectl for
//! `kubectl kustomize`); `.ci/run` runs them:
//!
//! ```sh
//! export HELM=$(charts/tools/helm build)
//! eval "$(tests/cluster/kube-local env)"       # kubectl for the parity tests
//! cargo test --test helm -- --ignored
//! UPDATE_GOLDEN=1 cargo test --test helm -- --ignored goldens   # after a deliberate change; read the diff
//! ```

#[path = "common/helm.rs"]
mod helm;

use std::path::Path;
use std::process::Command;

use helm::*;

const BIN: &str = env!("CARGO_BIN_EXE_persistence-webhook");

/// The golden cases: `tests/helm-goldens/<case>.yaml` is `helm template`
/// with `charts/persistence-webhook/ci/<case>-values.yaml` (none for
/// `default`; `hybrid` is in-cluster with the overlay's policies).
const GOLDEN_CASES: &[&str] = &[
    "default",
    "self-managed",
    "cert-manager",
    "in-cluster",
    "monitoring",
    "renamed",
    "hybrid",
];

/// The hybrid case's policies: the overlay's, `policy --hybrid` of the
/// base's example config (tests/cli_policy.rs keeps them so).
fn hybrid_policies() -> String {
    root()
        .join("manifests/overlays/hybrid/policies.yaml")
        .to_str()
        .expect("utf-8")
        .to_owned()
}

/// The `helm template` arguments of a golden case: its values file under
/// the chart's `ci/`, none for `default`.
fn case_args(case: &str) -> Vec<String> {
    if case == "default" {
        return vec![];
    }
    if case == "hybrid" {
        // --set-file, as an operator gives the policies: no values file
        // under ci/ (helm lint renders each alone).
        let file = chart().join("ci/in-cluster-values.yaml");
        return vec![
            "-f".into(),
            file.to_str().expect("utf-8").to_owned(),
            "--set".into(),
            "hybrid.enabled=true".into(),
            "--set-file".into(),
            format!("hybrid.policies={}", hybrid_policies()),
        ];
    }
    let file = chart().join(format!("ci/{case}-values.yaml"));
    vec!["-f".into(), file.to_str().expect("utf-8").to_owned()]
}

#[test]
#[ignore = "needs the pinned helm (HELM): run by .ci/run"]
fn goldens() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0");
    let dir = root().join("tests/helm-goldens");
    let mut failed = Vec::new();
    for case in GOLDEN_CASES {
        let args = case_args(case);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let actual = template_ok(&args);
        let path = dir.join(format!("{case}.yaml"));
        if update {
            std::fs::create_dir_all(&dir).expect("tests/helm-goldens");
            std::fs::write(&path, &actual).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to write it)",
                path.display()
            )
        });
        if expected != actual {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(e, a)| e != a)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
            failed.push(format!(
                "{case}: differs from {} at line {}:\n  expected: {:?}\n  rendered: {:?}",
                path.display(),
                line + 1,
                expected.lines().nth(line).unwrap_or("<end>"),
                actual.lines().nth(line).unwrap_or("<end>")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{}\n(after a deliberate change: UPDATE_GOLDEN=1, then read the diff)",
        failed.join("\n")
    );
}

/// Each golden case's config is one the webhook itself accepts.
#[test]
#[ignore = "needs the pinned helm (HELM): run by .ci/run"]
fn the_rendered_config_validates() {
    for case in GOLDEN_CASES {
        let args = case_args(case);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let docs = documents(&template_ok(&args));
        let config = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap")
            .and_then(|d| d["data"]["persistence.yaml"].as_str())
            .expect("the ConfigMap's persistence.yaml");
        persistence_webhook::Config::from_yaml(config)
            .unwrap_or_else(|e| panic!("{case}: the webhook refuses the chart's config: {e}"));
    }
}

/// Values the chart refuses at `helm template` (so at `helm install` too),
/// each with what the message must name.
#[test]
#[ignore = "needs the pinned helm (HELM): run by .ci/run"]
fn bad_values_are_refused_naming_the_value() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "a wrong type",
            "replicaCount: two",
            &["at '/replicaCount'", "got string, want integer"],
        ),
        (
            "an unknown top-level key (a typo)",
            "persistance: {data: {}}",
            &["additional properties 'persistance' not allowed"],
        ),
        (
            "a bad enum: the certificate mode",
            "certificates: {mode: vault}",
            &["at '/certificates/mode'", "'self-managed', 'cert-manager', 'in-cluster'"],
        ),
        (
            "a bad enum: failurePolicy",
            "webhook: {failurePolicy: Sometimes}",
            &["at '/webhook/failurePolicy'", "'Fail', 'Ignore'"],
        ),
        (
            "a store kind the webhook does not know",
            "persistence: {data: {d1: {store: ftp, bucket: ftp://x}}}",
            &["at '/persistence/data/d1/store'", "'gcs', 's3', 'azure'"],
        ),
        (
            "a store field the webhook does not know",
            "persistence: {data: {d1: {mountPath: /d, hostpath: /mnt}}}",
            &["at '/persistence/data/d1'", "'hostpath' not allowed"],
        ),
        (
            "Polyaxon's logs store, which the webhook does not serve",
            "persistence: {logs: {mountPath: /logs, existingClaim: logs}}",
            &["at '/persistence'", "'logs' not allowed"],
        ),
        (
            "a store name that is not a DNS label",
            "persistence: {data: {Data_1: {mountPath: /d}}}",
            &["at '/persistence/data'", "additional properties 'Data_1' not allowed"],
        ),
        (
            "timeoutSeconds over the API server's maximum",
            "webhook: {timeoutSeconds: 31}",
            &["at '/webhook/timeoutSeconds'", "maximum"],
        ),
        (
            "the memory limit under the bound of the default flags",
            "resources: {limits: {memory: 128Mi}}",
            &[
                "resources.limits.memory (128Mi) is below the webhook's memory bound of 212 MiB",
                "bounds.maxInFlight=32",
                "at least 212Mi",
            ],
        ),
        (
            "a bound flag raised without the memory limit",
            "bounds: {maxInFlight: 80, maxConnections: 128, maxConnectionsPerPeer: 32, maxMetricsConnections: 32, maxBodyBytes: 4194304, maxBodyBufferBytes: 33554432, maxPatchBytes: 1048576}",
            &[
                "resources.limits.memory (256Mi) is below the webhook's memory bound of 302 MiB",
                "bounds.maxInFlight=80",
                "at least 302Mi",
            ],
        ),
        (
            "a memory limit that is not a quantity",
            "resources: {limits: {memory: lots}}",
            &["resources.limits.memory: \"lots\" is not a memory quantity"],
        ),
        (
            "the request timeout not below timeoutSeconds",
            "webhook: {timeoutSeconds: 8}",
            &["server.requestTimeoutSeconds (8) must be below webhook.timeoutSeconds (8)"],
        ),
        (
            "a grace period shorter than the shutdown",
            "terminationGracePeriodSeconds: 10",
            &["terminationGracePeriodSeconds (10) must be above server.shutdownDelaySeconds + server.drainTimeoutSeconds"],
        ),
        (
            "hybrid without its policies",
            "hybrid: {enabled: true}",
            &["hybrid.enabled=true needs hybrid.policies", "--hybrid", "--set-file hybrid.policies=policies.yaml"],
        ),
        (
            "hybrid with policies made without --hybrid",
            "hybrid: {enabled: true, policies: 'kind: \"MutatingAdmissionPolicy\"'}",
            &["hybrid.policies was generated without --hybrid", "mutated twice"],
        ),
        (
            "hybrid with policies for another namespace",
            r#"hybrid: {enabled: true, policies: "kind: \"MutatingAdmissionPolicy\"\n# hybrid-not-webhook-pods\n---\nkind: MutatingAdmissionPolicyBinding\nspec: {matchResources: {namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, elsewhere]}]}}}\n"}"#,
            &["another namespace than the release's (persistence-webhook)", "--webhook-namespace persistence-webhook"],
        ),
        (
            "half a certificate",
            "certificates: {selfManaged: {tlsCrt: x}}",
            &["certificates.selfManaged.tlsCrt and certificates.selfManaged.tlsKey go together"],
        ),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failed = Vec::new();
    for (what, values, want) in cases {
        let file = dir.path().join("values.yaml");
        std::fs::write(&file, values).expect("values");
        let out = template(&["-f", file.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failed.push(format!("{what}: rendered, expected a refusal ({values})"));
        } else if let Some(missing) = want.iter().find(|w| !stderr.contains(*w)) {
            failed.push(format!("{what}: the message lacks {missing:?}:\n{stderr}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Raising a bound with the memory limit that goes with it renders.
#[test]
#[ignore = "needs the pinned helm (HELM): run by .ci/run"]
fn a_raised_bound_with_its_memory_limit_renders() {
    let text = template_ok(&[
        "--set",
        "bounds.maxInFlight=64",
        "--set",
        "resources.limits.memory=400Mi",
    ]);
    assert!(text.contains("- --max-in-flight=64"), "{text}");
    assert!(text.contains("bound\"): 272 MiB with these"), "{text}");
    // A Polyaxon `persistence:` block as it is (data, outputs) renders as is.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("polyaxon.yaml");
    std::fs::write(
        &file,
        "persistence:\n  data:\n    data1: {mountPath: /data/1, hostPath: /path/to/data, readOnly: true}\n    data-gcs3: {store: gcs, bucket: gs://data-bucket, secret: gcs-secret, secretKey: gcs-key.json}\n  outputs:\n    outputs2: {mountPath: /outputs/2, existingClaim: outputs-2-pvc}\n",
    )
    .expect("values");
    let docs = documents(&template_ok(&["-f", file.to_str().expect("utf-8")]));
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["persistence.yaml"].as_str())
        .expect("ConfigMap");
    let parsed = persistence_webhook::Config::from_yaml(config).expect("valid");
    assert_eq!(
        parsed
            .stores(persistence_webhook::config::Role::Data)
            .keys()
            .collect::<Vec<_>>(),
        ["data-gcs3", "data1"]
    );
}

/// The chart's copy of the alert rules is manifests/monitoring/rules.yaml.
#[test]
fn the_charts_rules_are_the_manifests_rules() {
    let chart = std::fs::read_to_string(chart().join("files/rules.yaml")).expect("chart rules");
    let manifests = std::fs::read_to_string(root().join("manifests/monitoring/rules.yaml"))
        .expect("manifests rules");
    assert!(
        chart == manifests,
        "charts/persistence-webhook/files/rules.yaml differs from manifests/monitoring/rules.yaml: \
         cp manifests/monitoring/rules.yaml charts/persistence-webhook/files/rules.yaml"
    );
}

/// Renders the chart with `values` and the kustomize `dirs`, and fails with
/// every difference `charts/parity.yaml` does not allow.
fn parity(what: &str, values: &[&str], dirs: &[&Path]) {
    let parity = Parity::load();
    let files: Vec<String> = parity
        .chart_values
        .iter()
        .map(|f| root().join(f).to_str().expect("utf-8").to_owned())
        .collect();
    let mut args: Vec<&str> = files.iter().flat_map(|f| ["-f", f.as_str()]).collect();
    args.extend_from_slice(values);
    let chart = parity.normalise(documents(&template_ok(&args)), false);
    let kustomized = parity.normalise(dirs.iter().flat_map(|d| kustomize(d)).collect(), true);
    let found = differences(&kustomized, &chart);
    assert!(
        found.is_empty(),
        "{what}: the chart and kustomize differ beyond charts/parity.yaml (change one side to match, \
         or add the difference to charts/parity.yaml with its reason):\n  {}",
        found.join("\n  ")
    );
}

fn manifests() -> std::path::PathBuf {
    root().join("manifests")
}

#[test]
#[ignore = "needs HELM and kubectl: run by .ci/run"]
fn parity_defaults_and_base() {
    parity(
        "chart defaults vs manifests/base",
        &[],
        &[&manifests().join("base")],
    );
}

#[test]
#[ignore = "needs HELM and kubectl: run by .ci/run"]
fn parity_self_managed() {
    // The overlay reads certs/ beside it (git-ignored): render it from a
    // copy of manifests/ with certificates from `certs`, and give the chart
    // the same files.
    let scratch = tempfile::tempdir().expect("tempdir");
    let copy = scratch.path().join("manifests");
    copy_dir(&manifests(), &copy);
    let certs = copy.join("overlays/self-managed/certs");
    let _ = std::fs::remove_dir_all(&certs);
    let out = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(&certs)
        .output()
        .expect("certs runs");
    assert!(
        out.status.success(),
        "certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = |name: &str| format!("{}", certs.join(name).display());
    let (crt, key, bundle) = (file("tls.crt"), file("tls.key"), file("ca-bundle.b64"));
    let crt_arg = format!("certificates.selfManaged.tlsCrt={crt}");
    let key_arg = format!("certificates.selfManaged.tlsKey={key}");
    let bundle_arg = format!("certificates.selfManaged.caBundle={bundle}");
    parity(
        "certificates.mode=self-managed vs manifests/overlays/self-managed",
        &[
            "--set",
            "certificates.mode=self-managed",
            "--set-file",
            &crt_arg,
            "--set-file",
            &key_arg,
            "--set-file",
            &bundle_arg,
        ],
        &[&copy.join("overlays/self-managed")],
    );
}

#[test]
#[ignore = "needs HELM and kubectl: run by .ci/run"]
fn parity_cert_manager() {
    parity(
        "certificates.mode=cert-manager vs manifests/overlays/cert-manager",
        &["--set", "certificates.mode=cert-manager"],
        &[&manifests().join("overlays/cert-manager")],
    );
}

#[test]
#[ignore = "needs HELM and kubectl: run by .ci/run"]
fn parity_in_cluster() {
    parity(
        "certificates.mode=in-cluster vs manifests/overlays/in-cluster-certificates",
        &["--set", "certificates.mode=in-cluster"],
        &[&manifests().join("overlays/in-cluster-certificates")],
    );
}

#[test]
#[ignore = "needs HELM and kubectl: run by .ci/run"]
fn parity_hybrid() {
    let policies = format!("hybrid.policies={}", hybrid_policies());
    parity(
        "in-cluster + hybrid vs manifests/overlays/hybrid",
        &[
            "--set",
            "certificates.mode=in-cluster",
            "--set",
            "hybrid.enabled=true",
            "--set-file",
            &policies,
        ],
        &[&manifests().join("overlays/hybrid")],
    );
}

#[test]
#[ignore = "needs HELM and kubectl: run by .ci/run"]
fn parity_monitoring() {
    parity(
        "monitoring on vs manifests/base + manifests/monitoring/prometheus-operator",
        &[
            "--set",
            "monitoring.serviceMonitor.enabled=true",
            "--set",
            "monitoring.prometheusRule.enabled=true",
        ],
        &[
            &manifests().join("base"),
            &manifests().join("monitoring/prometheus-operator"),
        ],
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
