//! The live verdict on built objects: every "why" in the order the API
//! server decides, and a mutated pod re-reviewed with today's config.

use std::collections::BTreeMap;

use super::*;
use crate::config::Config;
use crate::offline::account::account;
use crate::vocabulary::{ANNOTATION_INJECTED, LABEL_INJECTION, WEBHOOK_ENTRY};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::admissionregistration::v1::{MatchCondition, RuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use serde_json::json;

const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /mnt/data/1, readOnly: true}
outputs:
  outputs1: {mountPath: /outputs/1, hostPath: /mnt/outputs/1}
defaultOutputs: outputs1
"#;

fn config() -> Config {
    Config::from_yaml(CONFIG).expect("the test config is valid")
}

fn rereviewed(pod: &Value, config: &Config) -> (Account, Option<bool>) {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("team");
    rereview(
        config,
        &crate::Bounds::default(),
        pod,
        ns,
        crate::flags::DEFAULT_UID,
    )
    .expect("reviewable")
}

fn today(pod: &Value) -> Account {
    rereviewed(pod, &config()).0
}

fn pod(labels: Value, annotations: Value, created: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "train", "namespace": "team", "labels": labels,
                     "annotations": annotations, "creationTimestamp": created},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}
    })
}

/// The manifests' registration, created at `created`.
fn registration(created: &str) -> MutatingWebhookConfiguration {
    let expr = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
    };
    serde_json::from_value(json!({
        "metadata": {"name": "persistence-webhook", "creationTimestamp": created},
        "webhooks": [{
            "name": WEBHOOK_ENTRY,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"url": "https://127.0.0.1/mutate"},
        }]
    }))
    .map(|mut c: MutatingWebhookConfiguration| {
        if let Some(h) = c.webhooks.as_mut().and_then(|w| w.first_mut()) {
            h.namespace_selector = Some(LabelSelector {
                match_expressions: Some(vec![expr(LABEL_INJECTION, "In", &["enabled"])]),
                ..Default::default()
            });
            h.object_selector = Some(LabelSelector {
                match_expressions: Some(vec![expr(LABEL_INJECTION, "NotIn", &["disabled"])]),
                ..Default::default()
            });
            h.rules = Some(vec![RuleWithOperations {
                operations: Some(vec!["CREATE".into()]),
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".into()]),
                resources: Some(vec!["pods".into()]),
                scope: Some("Namespaced".into()),
            }]);
        }
        c
    })
    .expect("a valid configuration")
}

fn opted_in() -> BTreeMap<String, String> {
    [(LABEL_INJECTION.to_owned(), "enabled".to_owned())].into()
}

fn verdict(
    pod: &Value,
    labels: &BTreeMap<String, String>,
    conf: Option<&MutatingWebhookConfiguration>,
) -> Live {
    verdict_with(pod, labels, conf, &config())
}

fn verdict_with(
    pod: &Value,
    labels: &BTreeMap<String, String>,
    conf: Option<&MutatingWebhookConfiguration>,
    config: &Config,
) -> Live {
    let (today, same_today) = rereviewed(pod, config);
    judge(
        &Objects {
            pod,
            namespace_labels: labels,
            configuration: conf,
            same_today,
            policy: Ok(None),
        },
        "persistence-webhook",
        &today,
    )
}

const EARLY: &str = "2026-01-01T10:00:00Z";
const LATE: &str = "2026-01-01T10:00:05Z";

#[test]
fn not_mutated_pods_are_told_why_in_the_api_servers_order() {
    let reg = registration(EARLY);
    let plain = pod(json!({}), json!({}), LATE);
    let opted_out = pod(json!({LABEL_INJECTION: "disabled"}), json!({}), LATE);
    let none = BTreeMap::new();

    // The namespace comes first, even for an opted-out pod.
    let v = verdict(&opted_out, &none, Some(&reg));
    assert_eq!(v.verdict, Verdict::NamespaceNotSelected);
    assert!(v.why.contains("never called the webhook"), "{}", v.why);
    assert!(v.why.contains("kubectl label namespace team"), "{}", v.why);
    assert!(!v.mutated);

    let v = verdict(&opted_out, &opted_in(), Some(&reg));
    assert_eq!(v.verdict, Verdict::OptedOut);
    assert!(v
        .why
        .contains("polyaxon.com/persistence-injection=disabled"));

    let early_pod = pod(json!({}), json!({}), "2025-12-31T23:59:59Z");
    let v = verdict(&early_pod, &opted_in(), Some(&reg));
    assert_eq!(v.verdict, Verdict::CreatedBeforeRegistration);
    assert!(v.why.contains("2025-12-31T23:59:59Z") && v.why.contains(EARLY));

    // The same second is not "before".
    let same = pod(json!({}), json!({}), EARLY);
    assert_eq!(
        verdict(&same, &opted_in(), Some(&reg)).verdict,
        Verdict::NotMutated
    );

    let v = verdict(&plain, &opted_in(), None);
    assert_eq!(v.verdict, Verdict::NoConfiguration);
    assert!(v
        .why
        .contains("no MutatingWebhookConfiguration persistence-webhook"));
    // Without a configuration, the manifests' opt-in label is what counts.
    assert_eq!(
        verdict(&plain, &none, None).verdict,
        Verdict::NamespaceNotSelected
    );

    let mut no_rules = registration(EARLY);
    if let Some(h) = no_rules.webhooks.as_mut().and_then(|w| w.first_mut()) {
        h.rules = Some(vec![RuleWithOperations {
            operations: Some(vec!["UPDATE".into()]),
            api_groups: Some(vec![String::new()]),
            api_versions: Some(vec!["v1".into()]),
            resources: Some(vec!["pods".into()]),
            scope: None,
        }]);
    }
    let v = verdict(&plain, &opted_in(), Some(&no_rules));
    assert_eq!(v.verdict, Verdict::ExcludedByConfiguration);
    assert!(v.why.contains("rules"), "{}", v.why);

    let mut picky = registration(EARLY);
    if let Some(h) = picky.webhooks.as_mut().and_then(|w| w.first_mut()) {
        h.object_selector = Some(LabelSelector {
            match_labels: Some([("team".to_owned(), "ml".to_owned())].into()),
            ..Default::default()
        });
    }
    let v = verdict(&plain, &opted_in(), Some(&picky));
    assert_eq!(v.verdict, Verdict::ExcludedByConfiguration);
    assert!(v.why.contains("objectSelector"), "{}", v.why);

    let mut other = registration(EARLY);
    if let Some(h) = other.webhooks.as_mut().and_then(|w| w.first_mut()) {
        h.name = "a.example.com".into();
    }
    if let Some(w) = other.webhooks.as_mut() {
        let copy = w[0].clone();
        w.push(copy);
    }
    let v = verdict(&plain, &opted_in(), Some(&other));
    assert_eq!(v.verdict, Verdict::NoConfiguration);
    assert!(v.why.contains("no webhook entry"), "{}", v.why);

    // A matchCondition false for the pod is named; the API server
    // evaluates them after the selectors and rules.
    let mut conditioned = registration(EARLY);
    if let Some(h) = conditioned.webhooks.as_mut().and_then(|w| w.first_mut()) {
        h.match_conditions = Some(vec![
            MatchCondition {
                name: "not-kubernetes-system-namespace".into(),
                expression: "!request.namespace.startsWith('kube-')".into(),
            },
            MatchCondition {
                name: "not-team".into(),
                expression: "request.namespace != 'team'".into(),
            },
        ]);
    }
    let v = verdict(&plain, &opted_in(), Some(&conditioned));
    assert_eq!(v.verdict, Verdict::ExcludedByMatchCondition);
    assert_eq!(v.verdict.as_str(), "excluded-by-match-condition");
    assert_eq!(v.match_condition.as_deref(), Some("not-team"));
    assert!(
        v.why.contains("matchCondition not-team of webhook persistence.polyaxon.com (request.namespace != 'team') is false"),
        "{}",
        v.why
    );
    // The namespace and the opt-out label still come first.
    assert_eq!(
        verdict(&opted_out, &opted_in(), Some(&conditioned)).verdict,
        Verdict::OptedOut
    );
    // A condition not evaluated offline is named as a possible cause.
    if let Some(h) = conditioned.webhooks.as_mut().and_then(|w| w.first_mut()) {
        h.match_conditions = Some(vec![MatchCondition {
            name: "no-nodes".into(),
            expression: "!('system:nodes' in request.userInfo.groups)".into(),
        }]);
    }
    let v = verdict(&plain, &opted_in(), Some(&conditioned));
    assert_eq!(v.verdict, Verdict::NotMutated);
    assert_eq!(v.match_condition, None);
    assert!(
        v.why
            .contains("matchCondition no-nodes (not evaluated offline)"),
        "{}",
        v.why
    );

    // Everything sends it: the webhook was called; today it would patch.
    let v = verdict(&plain, &opted_in(), Some(&reg));
    assert_eq!(v.verdict, Verdict::NotMutated);
    assert!(v.why.contains("another webhook"), "{}", v.why);
    assert!(v.why.contains("would mutate it"), "{}", v.why);
    assert_eq!(
        v.webhook_configuration.as_deref(),
        Some("persistence-webhook")
    );
}

/// The pod the webhook made from `pod` with today's config.
fn mutated(pod: &Value) -> Value {
    let body = crate::offline::dry_run::review_body(pod, "team", crate::flags::DEFAULT_UID);
    let reviewed = crate::review_with(&config(), &crate::Bounds::default(), &body).expect("review");
    let crate::Decision::Patched(patch) = reviewed.decision else {
        panic!("expected a patch, got {:?}", reviewed.decision)
    };
    let mut out = pod.clone();
    json_patch::patch(&mut out, patch.patch()).expect("the patch applies");
    out
}

#[test]
fn a_mutated_pod_is_told_what_it_got_and_whether_today_gives_the_same() {
    let reg = registration(EARLY);
    let got = mutated(&pod(json!({}), json!({}), LATE));
    let v = verdict(&got, &opted_in(), Some(&reg));
    assert!(v.mutated);
    assert_eq!(v.verdict, Verdict::Mutated, "{}", v.why);
    assert!(v.differences.is_empty());
    assert_eq!(
        v.got,
        Some(Got {
            data: vec!["data1".into()],
            outputs: Some("outputs1".into()),
            outputs_path: Some("/outputs/1/team/train".into()),
        })
    );
    let main = &v.containers[0];
    assert_eq!(main.name, "main");
    assert!(main.env.contains(&"POLYAXON_RUN_OUTPUTS_PATH".to_owned()));
    assert!(main.env.contains(&"POLYAXON_RUN_DATA_PATHS".to_owned()));
    assert!(
        main.mounts
            .iter()
            .any(|m| m.starts_with("/data/1 (volume pw-data1") && m.ends_with("read-only)")),
        "{:?}",
        main.mounts
    );
    let installed = ConfigSource::Installed {
        deployment: "pw/pw".into(),
        config_map: "pw/pw-config".into(),
        key: "persistence.yaml".into(),
    };
    let text = text(&v, &today(&got), &installed);
    assert!(text.starts_with("live pod team/train: mutated\n"), "{text}");
    assert!(
        text.contains("(today's config: ConfigMap pw/pw-config, key persistence.yaml, mounted by Deployment pw/pw):"),
        "{text}"
    );
    assert!(
        text.contains("outputs outputs1 at /outputs/1/team/train"),
        "{text}"
    );
    assert!(!text.contains("env-conflict"), "{text}");

    // The annotation says something today's config does not select.
    let mut changed = got.clone();
    changed["metadata"]["annotations"][ANNOTATION_INJECTED] = json!(
        json!({"data": ["data1", "old"], "outputs": "outputs0", "outputsPath": "/outputs/1/team/train"})
            .to_string()
    );
    let v = verdict(&changed, &opted_in(), Some(&reg));
    assert_eq!(v.verdict, Verdict::MutatedDiffers);
    let fields: Vec<&str> = v.differences.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["data", "outputs"]);
    assert_eq!(v.differences[0].had, "data1, old");
    assert_eq!(v.differences[0].today, "data1");
    assert_eq!(v.differences[1].today, "outputs1");
    let file = ConfigSource::File {
        path: "persistence.yaml".into(),
    };
    let json = Explained {
        live: v.clone(),
        today: today(&changed),
        source: file,
    }
    .json();
    assert_eq!(
        json["config"],
        json!({"from": "file", "path": "persistence.yaml"})
    );
    assert_eq!(
        serde_json::to_value(&installed).expect("JSON"),
        json!({"from": "installed", "deployment": "pw/pw", "configMap": "pw/pw-config", "key": "persistence.yaml"})
    );
    assert_eq!(json["live"]["verdict"], "mutated-differs");
    assert_eq!(json["live"]["got"]["outputsPath"], "/outputs/1/team/train");
    // Today's review rewrites the annotation to what it selects.
    assert_eq!(json["account"]["outcome"], "patched");
    assert!(
        v.why.contains("today's config would give data data1 instead of data1, old, outputs outputs1 instead of outputs0"),
        "{}",
        v.why
    );
}

/// A pod mutated under an older config (its outputs store mounted
/// elsewhere then) is re-reviewed without the webhook's additions: the
/// answer is that today's config gives other values, with the account of
/// what it gives, not an `env-conflict` with the values the older config
/// wrote.
#[test]
fn a_pod_mutated_under_an_older_config_is_compared_not_refused() {
    let reg = registration(EARLY);
    let got = mutated(&pod(json!({}), json!({}), LATE));
    let newer = Config::from_yaml(&CONFIG.replace("/outputs/1", "/outputs/new"))
        .expect("the newer config is valid");
    // Re-reviewed as it stands, the older values conflict with today's.
    let ns = "team";
    let body = crate::offline::dry_run::review_body(&got, ns, crate::flags::DEFAULT_UID);
    let as_it_stands = account(&newer, &crate::Bounds::default(), &body).expect("reviewable");
    assert_eq!(as_it_stands.outcome.as_str(), "denied", "{as_it_stands:?}");
    // Without our additions: today's config patches it, differently.
    let v = verdict_with(&got, &opted_in(), Some(&reg), &newer);
    assert_eq!(v.verdict, Verdict::MutatedDiffers, "{}", v.why);
    assert!(
        v.why.contains(
            "today's config would give outputsPath /outputs/new/team/train instead of /outputs/1/team/train"
        ),
        "the same stores, another path: {}",
        v.why
    );
    let (today, same) = rereviewed(&got, &newer);
    assert_eq!((today.outcome.as_str(), same), ("patched", Some(false)));
    assert!(
        today
            .outputs
            .as_ref()
            .is_some_and(|o| o.path.starts_with("/outputs/new")),
        "{:?}",
        today.outputs
    );
    // With the config it was mutated under, it is the same.
    assert_eq!(rereviewed(&got, &config()).1, Some(true));
}

#[test]
fn live_names_are_namespace_slash_name() {
    assert_eq!(live_name("team/train"), Some(("team", "train")));
    assert_eq!(live_name("team/train-1.a"), Some(("team", "train-1.a")));
    for bad in [
        "train",
        "/train",
        "team/",
        "a/b/c",
        "pods/Train",
        "./pod.yaml",
    ] {
        assert_eq!(live_name(bad), None, "{bad}");
    }
}

/// The path a pod takes: in a hybrid install the core's partition decides
/// (the registration's and the policies' conditions named); beside a
/// webhook not narrowed the policies make it both; out of scope, neither.
#[test]
fn the_path_is_the_partitions_and_names_what_decided() {
    use super::route::{route, PolicyInstalled, Way};
    use persistence_webhook_core::policy::hybrid;

    let mut narrowed = registration(EARLY);
    if let Some(h) = narrowed.webhooks.as_mut().and_then(|w| w.first_mut()) {
        h.match_conditions = Some(vec![MatchCondition {
            name: hybrid::WEBHOOK_CONDITION.into(),
            expression: hybrid::webhook_pods(),
        }]);
    }
    let plain = registration(EARLY);
    let policy = |hybrid: bool, bound: bool| PolicyInstalled {
        name: "persistence-webhook".into(),
        bound,
        hybrid,
    };
    let named = pod(json!({}), json!({}), LATE);
    let annotated = pod(
        json!({}),
        json!({"polyaxon.com/persistence": "data: [data1]"}),
        LATE,
    );
    let mut generated = pod(json!({}), json!({}), LATE);
    generated["metadata"]["generateName"] = json!("tr");
    let route_of = |p: &Value, labels, conf, pol: Option<PolicyInstalled>| {
        route(p, labels, Some(conf), pol.as_ref(), "persistence-webhook")
    };
    let on = opted_in();
    let cases = [
        (
            &named,
            &on,
            &narrowed,
            Some(policy(true, true)),
            Way::Policy,
            Some(hybrid::POLICY_CONDITION),
            "a name at admission",
        ),
        (
            &annotated,
            &on,
            &narrowed,
            Some(policy(true, true)),
            Way::Webhook,
            Some(hybrid::WEBHOOK_CONDITION),
            "polyaxon.com/persistence",
        ),
        // "train" starts with "tr": its name was generated after admission.
        (
            &generated,
            &on,
            &narrowed,
            Some(policy(true, true)),
            Way::Webhook,
            Some(hybrid::WEBHOOK_CONDITION),
            "admission uid",
        ),
        (
            &named,
            &on,
            &narrowed,
            None,
            Way::Neither,
            Some(hybrid::WEBHOOK_CONDITION),
            "no MutatingAdmissionPolicy of ours",
        ),
        (
            &named,
            &on,
            &narrowed,
            Some(policy(true, false)),
            Way::Neither,
            Some(hybrid::WEBHOOK_CONDITION),
            "which no binding binds",
        ),
        (
            &named,
            &on,
            &plain,
            Some(policy(false, true)),
            Way::Both,
            None,
            "both mutate it",
        ),
        (
            &annotated,
            &on,
            &plain,
            Some(policy(false, true)),
            Way::Webhook,
            None,
            "only the webhook reads",
        ),
        (
            &named,
            &on,
            &plain,
            None,
            Way::Webhook,
            None,
            "no policy of ours",
        ),
        (
            &named,
            &BTreeMap::new(),
            &narrowed,
            Some(policy(true, true)),
            Way::Neither,
            Some("namespaceSelector"),
            "not opted in",
        ),
    ];
    for (i, (p, labels, conf, pol, way, by, says)) in cases.into_iter().enumerate() {
        let got = route_of(p, labels, conf, pol);
        assert_eq!(got.route, way, "case {i}: {got:?}");
        assert_eq!(got.decided_by.as_deref(), by, "case {i}: {got:?}");
        assert!(got.why.contains(says), "case {i}: {got:?}");
    }
}

/// Policies that cannot be read (no RBAC for them) are not taken for
/// absent silently: the path is worked out as if none were installed, and
/// says why it could not know, in JSON and in the text.
#[test]
fn unreadable_policies_are_said_not_assumed_absent() {
    let reg = registration(EARLY);
    let plain = pod(json!({}), json!({}), LATE);
    let labels = opted_in();
    let (today, same_today) = rereviewed(&plain, &config());
    let objects = |policy| Objects {
        pod: &plain,
        namespace_labels: &labels,
        configuration: Some(&reg),
        same_today,
        policy,
    };
    let forbidden =
        "cannot read MutatingAdmissionPolicy persistence-webhook: forbidden (Forbidden)";
    let unread = judge(
        &objects(Err(forbidden.to_owned())),
        "persistence-webhook",
        &today,
    );
    let absent = judge(&objects(Ok(None)), "persistence-webhook", &today);
    assert_eq!(unread.path.route, absent.path.route);
    assert_eq!(unread.path.why, absent.path.why);
    assert_eq!(unread.path.policies_unread.as_deref(), Some(forbidden));
    assert_eq!(absent.path.policies_unread, None);
    let json = serde_json::to_value(&unread.path).expect("serialises");
    assert_eq!(json["policiesUnread"], forbidden);
    let source = ConfigSource::File {
        path: "persistence.yaml".into(),
    };
    let said = super::text::text(&unread, &today, &source);
    assert!(
        said.contains(&format!(
            "(as if no admission policy of ours were installed: {forbidden})"
        )),
        "{said}"
    );
    assert!(!super::text::text(&absent, &today, &source).contains("as if no admission policy"));
}
