//! Verdicts of `webhook` on built objects.

use super::*;
use crate::cluster::check::report::Status;

/// The manifests' configuration, as the API server returns it.
fn manifest() -> MutatingWebhookConfiguration {
    let yaml = include_str!("../../../../manifests/base/mutatingwebhookconfiguration.yaml");
    serde_yaml::from_str(yaml).expect("the manifest parses")
}

fn expect() -> Expect<'static> {
    Expect {
        config_name: "persistence-webhook",
        namespace: "persistence-webhook",
        service: "persistence-webhook",
        request_timeout: Duration::from_secs(8),
        request_timeout_from: "serve's default",
    }
}

fn judged(edit: impl FnOnce(&mut MutatingWebhook)) -> (Vec<Check>, Option<Registration>) {
    let mut config = manifest();
    if let Some(hook) = config.webhooks.as_mut().and_then(|w| w.first_mut()) {
        edit(hook);
    }
    judge(Some(&config), &expect())
}

fn only(checks: &[Check], id: &str) -> Check {
    let found: Vec<&Check> = checks.iter().filter(|c| c.id == id).collect();
    assert_eq!(found.len(), 1, "{id} in {checks:#?}");
    found[0].clone()
}

#[test]
fn the_manifests_configuration_passes_every_check() {
    let (checks, reg) = judged(|_| {});
    for c in &checks {
        assert_eq!(c.result, Status::Passed, "{c:#?}");
    }
    assert_eq!(checks.len(), 11);
    let reg = reg.expect("registration");
    assert_eq!(
        reg.target,
        Target::Service {
            namespace: "persistence-webhook".into(),
            name: "persistence-webhook".into(),
            port: 443
        }
    );
    assert_eq!(
        reg.target.server_name(),
        "persistence-webhook.persistence-webhook.svc"
    );
    assert_eq!(reg.ca_bundle, None, "the base has no caBundle");
    let names: Vec<&str> = reg
        .match_conditions
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "not-kubernetes-system-namespace",
            "not-webhook-namespace",
            "not-mirror-pod"
        ]
    );
    let c = only(&checks, "webhook-match-conditions");
    assert!(
        c.detail.starts_with(
            "not-kubernetes-system-namespace (!request.namespace.startsWith('kube-'));"
        ),
        "{c:#?}"
    );
}

#[test]
fn a_missing_configuration_fails_with_the_install_command() {
    let (checks, reg) = judge(None, &expect());
    assert_eq!(reg, None);
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].result, Status::Failed);
    assert!(checks[0]
        .hint
        .as_deref()
        .is_some_and(|h| h.contains("kubectl apply -k manifests/overlays")));
}

#[test]
fn each_bad_field_fails_or_warns_its_own_check() {
    type Edit = fn(&mut MutatingWebhook);
    let cases: Vec<(&str, Edit, &str, Status, &str)> = vec![
        (
            "rules: UPDATE only",
            |h| {
                if let Some(r) = h.rules.as_mut() {
                    r[0].operations = Some(vec!["UPDATE".into()]);
                }
            },
            "webhook-rules",
            Status::Failed,
            "no rule matches CREATE",
        ),
        (
            "rules: deployments",
            |h| {
                if let Some(r) = h.rules.as_mut() {
                    r[0].resources = Some(vec!["deployments".into()]);
                }
            },
            "webhook-rules",
            Status::Failed,
            "no rule matches",
        ),
        (
            "rules: also UPDATE",
            |h| {
                if let Some(r) = h.rules.as_mut() {
                    r[0].operations = Some(vec!["CREATE".into(), "UPDATE".into()]);
                }
            },
            "webhook-rules",
            Status::Warning,
            "also sends UPDATE",
        ),
        (
            "rules: wildcard",
            |h| {
                if let Some(r) = h.rules.as_mut() {
                    r[0].operations = Some(vec!["*".into()]);
                }
            },
            "webhook-rules",
            Status::Warning,
            "also sends *",
        ),
        (
            "no namespaceSelector, Fail",
            |h| h.namespace_selector = None,
            "webhook-namespace-selector",
            Status::Failed,
            "kube-system",
        ),
        (
            "no namespaceSelector, Ignore",
            |h| {
                h.namespace_selector = None;
                h.failure_policy = Some("Ignore".into());
            },
            "webhook-namespace-selector",
            Status::Warning,
            "without",
        ),
        (
            "namespaceSelector on another label",
            |h| {
                h.namespace_selector = Some(LabelSelector {
                    match_labels: Some(labels([("team", "ml")])),
                    ..Default::default()
                });
            },
            "webhook-namespace-selector",
            Status::Failed,
            "does not select",
        ),
        (
            "no objectSelector",
            |h| h.object_selector = None,
            "webhook-object-selector",
            Status::Warning,
            "still sent",
        ),
        (
            "objectSelector requiring a label",
            |h| {
                h.object_selector = Some(LabelSelector {
                    match_labels: Some(labels([("inject", "yes")])),
                    ..Default::default()
                });
            },
            "webhook-object-selector",
            Status::Failed,
            "ordinary pods",
        ),
        (
            "a matchCondition always false",
            |h| {
                if let Some(c) = h.match_conditions.as_mut() {
                    c.push(MatchCondition {
                        name: "never".into(),
                        expression: "request.namespace == 'x' && false".into(),
                    });
                }
            },
            "webhook-match-conditions",
            Status::Failed,
            "matchCondition never is false for every request",
        ),
        (
            "a matchCondition on dryRun",
            |h| {
                h.match_conditions = Some(vec![MatchCondition {
                    name: "real-only".into(),
                    expression: "!request.dryRun".into(),
                }]);
            },
            "webhook-match-conditions",
            Status::Warning,
            "matchCondition real-only reads request.dryRun",
        ),
        (
            "no matchConditions",
            |h| h.match_conditions = None,
            "webhook-match-conditions",
            Status::Passed,
            "none",
        ),
        (
            "a matchCondition outside the subset",
            |h| {
                h.match_conditions = Some(vec![MatchCondition {
                    name: "no-nodes".into(),
                    expression: "!('system:nodes' in request.userInfo.groups)".into(),
                }]);
            },
            "webhook-match-conditions",
            Status::Passed,
            "no-nodes",
        ),
        (
            "sideEffects Some",
            |h| h.side_effects = "Some".into(),
            "webhook-side-effects",
            Status::Failed,
            "dry-run",
        ),
        (
            "sideEffects NoneOnDryRun",
            |h| h.side_effects = "NoneOnDryRun".into(),
            "webhook-side-effects",
            Status::Passed,
            "NoneOnDryRun",
        ),
        (
            "failurePolicy Ignore",
            |h| h.failure_policy = Some("Ignore".into()),
            "webhook-failure-policy",
            Status::Warning,
            "start without",
        ),
        (
            "timeout 8s",
            |h| h.timeout_seconds = Some(8),
            "webhook-timeout",
            Status::Failed,
            "8s is not above --request-timeout 8s",
        ),
        (
            "timeout absent = 10s",
            |h| h.timeout_seconds = None,
            "webhook-timeout",
            Status::Passed,
            "10s > --request-timeout 8s",
        ),
        (
            "reinvocation Never",
            |h| h.reinvocation_policy = Some("Never".into()),
            "webhook-reinvocation",
            Status::Warning,
            "sidecar",
        ),
        (
            "reinvocation absent",
            |h| h.reinvocation_policy = None,
            "webhook-reinvocation",
            Status::Warning,
            "Never",
        ),
        (
            "review v2",
            |h| h.admission_review_versions = vec!["v2".into()],
            "webhook-review-versions",
            Status::Failed,
            "v2",
        ),
        (
            "path /",
            |h| {
                if let Some(s) = h.client_config.service.as_mut() {
                    s.path = None;
                }
            },
            "webhook-client-config",
            Status::Failed,
            "POST /mutate",
        ),
        (
            "another Service",
            |h| {
                if let Some(s) = h.client_config.service.as_mut() {
                    s.name = "other".into();
                }
            },
            "webhook-client-config",
            Status::Warning,
            "not persistence-webhook/persistence-webhook",
        ),
        (
            "no target",
            |h| h.client_config.service = None,
            "webhook-client-config",
            Status::Failed,
            "neither",
        ),
    ];
    for (what, edit, id, status, fragment) in cases {
        let (checks, _) = judged(edit);
        let c = only(&checks, id);
        assert_eq!(c.result, status, "{what}: {c:#?}");
        assert!(
            c.detail.contains(fragment),
            "{what}: {fragment:?} not in {c:#?}"
        );
        assert_eq!(c.hint.is_some(), status != Status::Passed, "{what}: hint");
        let others_failed: Vec<_> = checks
            .iter()
            .filter(|o| o.id != id && o.result == Status::Failed)
            .collect();
        assert!(
            others_failed.is_empty() || what.starts_with("no namespaceSelector"),
            "{what}: only {id} fails, not {others_failed:#?}"
        );
    }
}

#[test]
fn a_url_registration_names_its_host_and_an_entry_is_found_by_name() {
    let (checks, reg) = judged(|h| {
        h.client_config.service = None;
        h.client_config.url = Some("https://127.0.0.1:8443/mutate".into());
        h.client_config.ca_bundle =
            Some(crate::cluster::check::objects::ByteString(b"PEM".to_vec()));
    });
    let reg = reg.expect("registration");
    assert_eq!(reg.target.server_name(), "127.0.0.1");
    assert_eq!(reg.ca_bundle.as_deref(), Some(&b"PEM"[..]));
    assert!(only(&checks, "webhook-client-config")
        .detail
        .contains("URL"));
    for (url, host) in [
        ("https://[::1]:8443/mutate", "::1"),
        ("https://hook.example.com/mutate", "hook.example.com"),
        ("hook:1/x", "hook"),
    ] {
        assert_eq!(url_host(url), host);
    }
    let mut two = manifest();
    if let Some(w) = two.webhooks.as_mut() {
        let mut other = w[0].clone();
        other.name = "other.example.com".into();
        other.side_effects = "Some".into();
        w.insert(0, other);
    }
    let (checks, _) = judge(Some(&two), &expect());
    assert!(only(&checks, "webhook-exists")
        .detail
        .contains(WEBHOOK_ENTRY));
    assert!(only(&checks, "webhook-side-effects").passed());
    if let Some(w) = two.webhooks.as_mut() {
        w[1].name = "renamed".into();
    }
    let (checks, reg) = judge(Some(&two), &expect());
    assert_eq!(reg, None);
    assert!(checks[0].detail.contains("other.example.com, renamed"));
}
