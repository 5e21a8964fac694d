//! The CEL subset on built requests: each form, CEL's absorbing logic, and
//! "unknown" wherever the subset or the caller's knowledge ends.

use super::*;

fn pod(namespace: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "train", "namespace": namespace, "annotations": annotations},
           "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

fn on(expression: &str, pod: &Value) -> Outcome {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("team");
    eval_text(expression, &Bindings::pod_create(pod, ns, false))
}

/// The conditions the manifests ship.
fn shipped() -> Vec<(String, String)> {
    let yaml = include_str!("../../../../manifests/base/mutatingwebhookconfiguration.yaml");
    let config: crate::cluster::check::objects::MutatingWebhookConfiguration =
        serde_yaml::from_str(yaml).expect("the manifest parses");
    config
        .webhooks
        .iter()
        .flatten()
        .flat_map(|w| w.match_conditions.iter().flatten())
        .map(|c| (c.name.clone(), c.expression.clone()))
        .collect()
}

#[test]
fn each_form_of_the_subset_evaluates_as_cel_does() {
    let plain = pod("team", json!({}));
    let mirror = pod("team", json!({"kubernetes.io/config.mirror": "abc"}));
    let bare = json!({"metadata": {"name": "x"}});
    let cases: Vec<(&str, &Value, Outcome)> = vec![
        ("true", &plain, Outcome::True),
        ("false", &plain, Outcome::False),
        ("request.namespace == 'team'", &plain, Outcome::True),
        ("request.namespace != \"team\"", &plain, Outcome::False),
        (
            "!(request.namespace in ['kube-system', 'team'])",
            &plain,
            Outcome::False,
        ),
        (
            "!request.namespace.startsWith('kube-')",
            &plain,
            Outcome::True,
        ),
        (
            "request.namespace.endsWith('eam') && request.namespace.contains('ea')",
            &plain,
            Outcome::True,
        ),
        (
            "request.operation == 'CREATE' && request.kind.kind == 'Pod'",
            &plain,
            Outcome::True,
        ),
        (
            "request.resource.resource == 'pods' && request.subResource == ''",
            &plain,
            Outcome::True,
        ),
        ("request.dryRun", &plain, Outcome::False),
        ("request.name == 'train'", &plain, Outcome::True),
        (
            "!('kubernetes.io/config.mirror' in object.metadata.annotations)",
            &mirror,
            Outcome::False,
        ),
        (
            "!('kubernetes.io/config.mirror' in object.metadata.annotations)",
            &plain,
            Outcome::True,
        ),
        (
            "object.metadata.annotations['kubernetes.io/config.mirror'] == 'abc'",
            &mirror,
            Outcome::True,
        ),
        ("has(object.metadata.annotations)", &bare, Outcome::False),
        (
            "!has(object.metadata.annotations) || !('a' in object.metadata.annotations)",
            &bare,
            Outcome::True,
        ),
        ("size(object.spec.containers) == 1", &plain, Outcome::True),
        (
            "object.spec.containers[0].name == 'main'",
            &plain,
            Outcome::True,
        ),
        ("-1 == -1", &plain, Outcome::True),
        ("[] == []", &plain, Outcome::True),
        // CEL's logic absorbs an error on the other side.
        (
            "false && object.metadata.labels['x'] == 'y'",
            &plain,
            Outcome::False,
        ),
        (
            "object.metadata.labels['x'] == 'y' || true",
            &plain,
            Outcome::True,
        ),
    ];
    for (expr, pod, want) in cases {
        assert_eq!(on(expr, pod), want, "{expr}");
    }
}

#[test]
fn run_time_errors_and_unknowns_are_kept_apart() {
    let bare = json!({"metadata": {"name": "x"}});
    for expr in [
        "'a' in object.metadata.annotations",
        "object.metadata.labels['app'] == 'x'",
        "request.namespace",
        "!request.operation",
    ] {
        assert!(
            matches!(on(expr, &bare), Outcome::Error(_)),
            "{expr}: {:?}",
            on(expr, &bare)
        );
    }
    for (expr, fragment) in [
        (
            "!('system:nodes' in request.userInfo.groups)",
            "request.userInfo",
        ),
        (
            "request.userInfo.username == 'x' && true",
            "request.userInfo",
        ),
        ("object.metadata.name.matches('^a')", "matches"),
        ("object.spec.containers.exists(c, c.name == 'x')", "exists"),
        (
            "authorizer.group('').resource('pods').check('x').allowed()",
            "outside",
        ),
        ("request.namespace == 'a' ? true : false", "outside"),
        ("request.namespace == 'unterminated", "unterminated"),
        ("(((", "ends too early"),
    ] {
        match on(expr, &bare) {
            Outcome::Unknown(why) => assert!(why.contains(fragment), "{expr}: {why}"),
            other => panic!("{expr}: {other:?}"),
        }
    }
    // Unknown on one side, false on the other: false.
    assert_eq!(
        on("request.userInfo.username == 'x' && false", &bare),
        Outcome::False
    );
    let deep = format!("{}true{}", "(".repeat(200), ")".repeat(200));
    assert!(matches!(on(&deep, &bare), Outcome::Unknown(_)));
}

#[test]
fn the_first_false_condition_excludes_and_the_unknown_ones_are_named() {
    let bare = json!({"metadata": {"name": "x"}});
    let conditions: Vec<MatchCondition> = [
        ("holds", "true"),
        ("user", "request.userInfo.username == 'x'"),
        ("first-false", "false"),
        ("fails", "request.namespace"),
        ("second-false", "false"),
    ]
    .into_iter()
    .map(|(name, expression)| MatchCondition {
        name: name.into(),
        expression: expression.into(),
    })
    .collect();
    let judged = evaluate(&conditions, &Bindings::pod_create(&bare, "team", false));
    assert_eq!(
        excluding(&judged).map(|j| j.name.as_str()),
        Some("first-false")
    );
    assert_eq!(unevaluated(&judged), ["user", "fails"]);
}

#[test]
fn only_what_is_false_for_every_request_is_always_false() {
    for expr in [
        "false",
        "!true",
        "false && request.namespace == 'x'",
        "1 == 2",
        "'a' in []",
        "(false)",
    ] {
        assert!(always_false(expr), "{expr}");
    }
    for expr in [
        "true",
        "request.namespace == 'x'",
        "request.namespace != 'x' && true",
        "false || object.metadata.name == 'x'",
        "object.metadata.name.matches('x')",
        "garbage (",
    ] {
        assert!(!always_false(expr), "{expr}");
    }
    for (name, expr) in shipped() {
        assert!(!always_false(&expr), "{name}");
        assert!(!reads_dry_run(&expr), "{name}");
    }
    assert!(reads_dry_run("!request.dryRun"));
    assert!(reads_dry_run(
        "request.namespace == 'a' && request.dryRun == false"
    ));
}

#[test]
fn the_shipped_conditions_let_ordinary_pods_through_and_keep_the_rest_out() {
    let conditions = shipped();
    let names: Vec<&str> = conditions.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "not-kubernetes-system-namespace",
            "not-webhook-namespace",
            "not-mirror-pod"
        ]
    );
    let outcome = |pod: &Value, ns: &str| -> Vec<(String, Outcome)> {
        conditions
            .iter()
            .map(|(n, e)| {
                (
                    n.clone(),
                    eval_text(e, &Bindings::pod_create(pod, ns, false)),
                )
            })
            .filter(|(_, o)| *o != Outcome::True)
            .collect()
    };
    // An ordinary pod, with or without annotations, with a dry run or not.
    for pod in [
        pod("team", json!({})),
        pod("team", json!({"polyaxon.com/persistence": "data: []"})),
        json!({"metadata": {"generateName": "train-"}, "spec": {}}),
    ] {
        assert_eq!(outcome(&pod, "team"), vec![], "{pod}");
        for c in &conditions {
            assert_eq!(
                eval_text(&c.1, &Bindings::pod_create(&pod, "team", true)),
                Outcome::True
            );
        }
    }
    // An injected pod is still sent: reinvocation must reach it (SPEC §5).
    let injected = pod("team", json!({"polyaxon.com/persistence-injected": "{}"}));
    assert_eq!(outcome(&injected, "team"), vec![]);
    for (ns, name) in [
        ("kube-system", "not-kubernetes-system-namespace"),
        ("kube-public", "not-kubernetes-system-namespace"),
        ("persistence-webhook", "not-webhook-namespace"),
    ] {
        assert_eq!(
            outcome(&pod(ns, json!({})), ns),
            vec![(name.to_owned(), Outcome::False)],
            "{ns}"
        );
    }
    let mirror = pod("team", json!({"kubernetes.io/config.mirror": "hash"}));
    assert_eq!(
        outcome(&mirror, "team"),
        vec![("not-mirror-pod".to_owned(), Outcome::False)]
    );
}
