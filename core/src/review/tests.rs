use super::*;
use base64::Engine as _;
use serde_json::{json, Value};

fn config() -> Config {
    Config::from_yaml("data: {d: {mountPath: /d}}\noutputs: {o: {mountPath: /o}}").expect("valid")
}

fn body(api: &str, kind: &str, operation: &str, object: Value) -> Vec<u8> {
    json!({
        "apiVersion": api, "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "namespace": "ns", "operation": operation, "dryRun": false,
            "object": object, "oldObject": null
        }
    })
    .to_string()
    .into_bytes()
}

fn pod() -> Value {
    json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "main"}]}})
}

fn response(r: &Reviewed) -> Value {
    serde_json::from_slice(&r.response).expect("response is JSON")
}

#[test]
fn patch_is_base64_string_with_patch_type() {
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", pod())).expect("answered");
    let out = response(&r);
    assert_eq!(out["apiVersion"], API_V1);
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(
        out["response"]["uid"],
        "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1"
    );
    assert_eq!(out["response"]["allowed"], true);
    assert_eq!(out["response"]["patchType"], "JSONPatch");
    let b64 = out["response"]["patch"]
        .as_str()
        .expect("patch is a base64 string, not a byte array");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("valid base64");
    let ops: Value = serde_json::from_slice(&raw).expect("decoded patch is JSON");
    let Decision::Patched(p) = &r.decision else {
        panic!("expected a patch, got {:?}", r.decision)
    };
    assert_eq!(ops, serde_json::to_value(p).expect("patch"));
    assert!(ops.as_array().is_some_and(|a| !a.is_empty()));
    assert_eq!(r.subject.name, "p");
    assert_eq!(r.subject.operation, "CREATE");
}

#[test]
fn object_before_kind_gets_the_same_answer() {
    // The API server sends kind and operation first; any order must work.
    let object = pod().to_string();
    let head = r#""uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"ns","operation":"CREATE""#;
    let first = format!(
        r#"{{"apiVersion":"{API_V1}","kind":"AdmissionReview","request":{{{head},"object":{object}}}}}"#
    );
    let last = format!(
        r#"{{"apiVersion":"{API_V1}","kind":"AdmissionReview","request":{{"object":{object},{head}}}}}"#
    );
    let a = review(&config(), first.as_bytes()).expect("answered");
    let b = review(&config(), last.as_bytes()).expect("answered");
    assert!(
        matches!(a.decision, Decision::Patched(_)),
        "{:?}",
        a.decision
    );
    assert_eq!(a.decision, b.decision);
    assert_eq!(a.response, b.response);
    // A non-Pod object after its kind is never read: garbage there is fine.
    let skipped = first
        .replace(r#""kind":"Pod""#, r#""kind":"Secret""#)
        .replace(&object, r#"{"spec":{"containers":"not a list"}}"#);
    let r = review(&config(), skipped.as_bytes()).expect("answered");
    assert_eq!(r.decision, Decision::Unchanged(Skip::NotPod));
    // A malformed Pod read in the first pass still gets the precise message.
    let broken = first.replace(&object, r#"{"spec":{"containers":"not a list"}}"#);
    let r = review(&config(), broken.as_bytes()).expect("answered");
    match r.decision {
        Decision::Invalid(m) => {
            assert!(m.starts_with("request.object is not a valid Pod"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn v1beta1_is_answered_in_kind() {
    let r = review(&config(), &body(API_V1BETA1, "Pod", "CREATE", pod())).expect("answered");
    assert_eq!(response(&r)["apiVersion"], API_V1BETA1);
}

#[test]
fn other_kinds_and_operations_pass_unchanged() {
    for (kind, op, skip) in [
        ("Deployment", "CREATE", Skip::NotPod),
        ("Pod", "UPDATE", Skip::NotCreate),
        ("Pod", "DELETE", Skip::NotCreate),
    ] {
        let r = review(
            &config(),
            &body(
                API_V1,
                kind,
                op,
                json!({"spec": {"containers": "not a pod"}}),
            ),
        )
        .expect("answered");
        assert_eq!(r.decision, Decision::Unchanged(skip), "{kind} {op}");
        let out = response(&r);
        assert_eq!(
            out["response"],
            json!({"uid": "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1", "allowed": true})
        );
    }
}

#[test]
fn opted_out_pod_is_unchanged() {
    let mut p = pod();
    p["metadata"]["labels"] = json!({"polyaxon.com/persistence-injection": "disabled"});
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", p)).expect("answered");
    assert_eq!(r.decision, Decision::Unchanged(Skip::OptedOut));
}

#[test]
fn denial_has_status_400_and_message() {
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"polyaxon.com/persistence": "data: [nope]"});
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", p)).expect("answered");
    let out = response(&r);
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(out["response"]["status"]["code"], 400);
    let msg = out["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("polyaxon.com/persistence") && msg.contains("data: d; outputs: o"),
        "{msg}"
    );
    assert!(out["response"].get("patch").is_none());
}

fn pod_with(containers: usize) -> Value {
    let list: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("c-{i}")}))
        .collect();
    json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": list}})
}

fn denial(r: &Reviewed) -> String {
    let out = response(r);
    assert_eq!(out["response"]["allowed"], false, "{out}");
    assert_eq!(out["response"]["status"]["code"], 400, "{out}");
    assert!(out["response"].get("patch").is_none());
    out["response"]["status"]["message"]
        .as_str()
        .expect("message")
        .to_owned()
}

#[test]
fn bounds_are_checked_before_the_patch_is_built() {
    // This config gives each container 2 mounts and 2 env vars.
    let items = Bounds {
        max_patch_bytes: u64::MAX,
        max_injected_items: 10_000,
    };
    let under = review_with(
        &config(),
        &items,
        &body(API_V1, "Pod", "CREATE", pod_with(2_500)),
    )
    .expect("answered");
    match &under.decision {
        Decision::Patched(p) => assert_eq!(p.patch().0.len(), 1 + 1 + 2 * 2_500),
        other => panic!("2,500 × 4 = 10,000 items is within the bound: {other:?}"),
    }
    let over = review_with(
        &config(),
        &items,
        &body(API_V1, "Pod", "CREATE", pod_with(2_501)),
    )
    .expect("answered");
    let msg = denial(&over);
    assert!(
        msg.starts_with("the patch would add 10,004 items (2,501 containers × 4) / about "),
        "{msg}"
    );
    assert!(
        msg.contains(
            "over the limit of 10,000 items (--max-injected-items); target fewer containers"
        ),
        "{msg}"
    );

    // Bytes: the default 1 MiB is reached before 10,000 items here.
    let big = review(&config(), &body(API_V1, "Pod", "CREATE", pod_with(5_000))).expect("answered");
    let msg = denial(&big);
    assert!(
        msg.starts_with("the patch would add 20,000 items (5,000 containers × 4) / about "),
        "{msg}"
    );
    assert!(msg.contains("over the limit of 10,000 items (--max-injected-items) and the limit of 1.0 MiB (1,048,576 bytes, --max-patch-bytes)"), "{msg}");
    assert!(matches!(big.decision, Decision::Denied(_)));

    // containers: narrows what is counted.
    let mut narrowed = pod_with(5_000);
    narrowed["metadata"]["annotations"] =
        json!({"polyaxon.com/persistence": "containers: [c-4999]"});
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", narrowed)).expect("answered");
    assert!(
        matches!(r.decision, Decision::Patched(_)),
        "{:?}",
        r.decision
    );
}

#[test]
fn a_re_admitted_pod_gets_the_same_bound_answer() {
    let tight = Bounds {
        max_patch_bytes: u64::MAX,
        max_injected_items: 40,
    };
    let first = review_with(
        &config(),
        &tight,
        &body(API_V1, "Pod", "CREATE", pod_with(10)),
    )
    .expect("answered");
    let Decision::Patched(p) = &first.decision else {
        panic!(
            "10 × 4 = 40 items is within the bound: {:?}",
            first.decision
        )
    };
    let mut patched = pod_with(10);
    json_patch::patch(&mut patched, p.patch()).expect("applies");
    let again =
        review_with(&config(), &tight, &body(API_V1, "Pod", "CREATE", patched)).expect("answered");
    assert_eq!(again.decision, Decision::Unchanged(Skip::AlreadyInjected));
}

#[test]
fn parser_messages_are_clipped() {
    let mut p = pod();
    p["metadata"]["labels"] = json!("x".repeat(100_000));
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", p)).expect("answered");
    match &r.decision {
        Decision::Invalid(m) => {
            assert!(m.starts_with("request.object is not a valid Pod"), "{m}");
            assert!(m.len() < 1200, "{} bytes", m.len());
        }
        other => panic!("{other:?}"),
    }
    let version = format!(
        r#"{{"apiVersion":"{}","request":{{"uid":"u"}}}}"#,
        "v".repeat(100_000)
    );
    let err = review(&config(), version.as_bytes())
        .expect_err("unsupported")
        .to_string();
    assert!(err.len() < 400, "{} bytes", err.len());
}

#[test]
fn malformed_requests_with_a_uid_get_an_answer() {
    let cases = [
        (
            json!({"metadata": {"name": "p"}, "spec": {"containers": "x"}}),
            "request.object is not a valid Pod",
        ),
        (Value::Null, "request.object is missing"),
    ];
    for (object, want) in cases {
        let r = review(&config(), &body(API_V1, "Pod", "CREATE", object)).expect("answered");
        match &r.decision {
            Decision::Invalid(m) => assert!(m.contains(want), "{m}"),
            other => panic!("{want}: got {other:?}"),
        }
        assert_eq!(response(&r)["response"]["allowed"], false);
    }
    // A request whose shape is wrong (operation is a number) still echoes the uid.
    let wrong = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","operation":5}}"#;
    let r = review(&config(), wrong).expect("answered");
    assert!(
        matches!(r.decision, Decision::Invalid(_)),
        "{:?}",
        r.decision
    );
    assert_eq!(response(&r)["response"]["uid"], "u1");
}

#[test]
fn unanswerable_bodies_are_errors() {
    let cases: [(&[u8], &str); 7] = [
            (b"", "not JSON"),
            (b"\xff\xfe", "not JSON"),
            (b"{\"apiVersion\":", "not JSON"),
            (b"[]", "not an AdmissionReview"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "no request"),
            (br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview","request":{"uid":"u"}}"#, "unsupported AdmissionReview apiVersion"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#, "not an AdmissionReview"),
        ];
    for (input, want) in cases {
        let err = review(&config(), input).expect_err(want).to_string();
        assert!(err.contains(want), "{input:?}: {err}");
    }
}

/// The parser's error travels as the source, whole (its position intact),
/// while the message stays the clipped one the answer carries.
#[test]
fn unanswerable_bodies_keep_the_parsers_error_as_their_source() {
    use std::error::Error as _;
    let cases: [(&[u8], &str, bool); 4] = [
        (b"{\"apiVersion\":", "not JSON", true),
        (b"\xff\xfe", "not JSON", true),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#, "not an AdmissionReview", true),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "no request",
            false,
        ),
    ];
    for (input, want, has_source) in cases {
        let err = review(&config(), input).expect_err(want);
        assert!(err.to_string().contains(want), "{input:?}: {err}");
        match err.source() {
            Some(source) => {
                assert!(has_source, "{input:?}: unexpected source {source}");
                let parse = source
                    .downcast_ref::<ParseError>()
                    .expect("the source is the parser's error");
                match parse {
                    ParseError::Json(e) => {
                        assert!(e.line() >= 1, "{input:?}: a JSON error knows its line");
                        assert!(err.to_string().ends_with(&e.to_string()), "{err} / {e}");
                    }
                    ParseError::Utf8(e) => assert_eq!(e.valid_up_to(), 0, "{input:?}"),
                }
            }
            None => assert!(!has_source, "{input:?}: the parser's error was dropped"),
        }
    }
}

#[test]
fn denials_are_typed_and_the_response_keeps_the_message() {
    let annotated = |key: &str, value: &str| {
        let mut p = pod();
        p["metadata"]["annotations"] = json!({ key: value });
        p
    };
    let mut env_clash = pod();
    env_clash["spec"]["containers"] = json!([
        {"name": "side"},
        {"name": "main", "env": [{"name": "POLYAXON_RUN_OUTPUTS_PATH", "value": "/x"}]}
    ]);
    let cases = [
        (
            annotated("polyaxon.com/persistence", "data: [nope]"),
            Reason::UnknownStore,
            "metadata.annotations[polyaxon.com/persistence]",
        ),
        (
            annotated("polyaxon.com/persistence", "outputs: [o, o]"),
            Reason::BadSelection,
            "metadata.annotations[polyaxon.com/persistence]",
        ),
        (
            annotated("polyaxon.com/persistence", "containers: []"),
            Reason::NoContainers,
            "metadata.annotations[polyaxon.com/persistence]",
        ),
        (
            annotated("polyaxon.com/outputs-subpath", "../up"),
            Reason::BadSubpath,
            "metadata.annotations[polyaxon.com/outputs-subpath]",
        ),
        (
            annotated("polyaxon.com/unique-name", "not a run"),
            Reason::BadUniqueName,
            "metadata.annotations[polyaxon.com/unique-name]",
        ),
        (
            env_clash,
            Reason::EnvConflict,
            "spec.containers[1].env[POLYAXON_RUN_OUTPUTS_PATH]",
        ),
    ];
    for (object, reason, field) in cases {
        let r = review(&config(), &body(API_V1, "Pod", "CREATE", object)).expect("answered");
        let Decision::Denied(denial) = &r.decision else {
            panic!("{reason}: {:?}", r.decision)
        };
        assert_eq!(denial.reason(), reason, "{denial}");
        assert_eq!(r.decision.reason(), Some(reason));
        assert_eq!(denial.field(), Some(field), "{reason}");
        assert_eq!(denial.to_string(), denial.cause().to_string());
        assert_eq!(
            response(&r)["response"]["status"]["message"],
            json!(denial.to_string()),
            "{reason}"
        );
    }
}

/// SPEC §8: each case that warns, one line naming the container and the
/// variable or store and never a value; and no warning on the ordinary
/// path (patched, or admitted again unchanged).
#[test]
fn warnings_name_what_happened_and_the_ordinary_path_has_none() {
    let config = Config::from_yaml(
        "data: {d: {mountPath: /d}, g: {store: gcs, bucket: gs://b, secret: s, secretKey: k.json}}\n\
         outputs: {o: {mountPath: /o}, s3: {store: s3, bucket: s3://o, region: eu-west-1}}",
    )
    .expect("valid");
    let with = |annotations: Value, containers: Value| {
        let object = json!({"metadata": {"name": "p", "namespace": "ns", "annotations": annotations},
            "spec": {"containers": containers}});
        review(&config, &body(API_V1, "Pod", "CREATE", object)).expect("answered")
    };
    let ordinary = with(json!({}), json!([{"name": "main"}]));
    assert!(matches!(ordinary.decision, Decision::Patched(_)));
    assert!(ordinary.notes.warnings.is_empty(), "{:?}", ordinary.notes);
    assert!(response(&ordinary)["response"].get("warnings").is_none());

    let cases: &[(&str, Value, Value, &[&str])] = &[
        (
            "own GOOGLE_APPLICATION_CREDENTIALS",
            json!({"polyaxon.com/persistence": "data: [g]"}),
            json!([{"name": "main", "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/secret/value.json"}]}]),
            &["container \"main\" sets GOOGLE_APPLICATION_CREDENTIALS itself and keeps its own: the webhook left out GOOGLE_APPLICATION_CREDENTIALS"],
        ),
        (
            "own region",
            json!({"polyaxon.com/persistence": "outputs: s3"}),
            json!([{"name": "main", "env": [{"name": "AWS_DEFAULT_REGION", "value": "ap-south-1"}]}]),
            &["container \"main\" sets AWS_DEFAULT_REGION itself and keeps its own: the webhook left out AWS_REGION, AWS_DEFAULT_REGION"],
        ),
        (
            "containers subset",
            json!({"polyaxon.com/persistence": "containers: [main]"}),
            json!([{"name": "main"}, {"name": "side"}, {"name": "log"}]),
            &["containers side, log get no stores: annotation polyaxon.com/persistence targets only the containers it names in containers:"],
        ),
        (
            "kept outputs path the rules would not give today",
            json!({"polyaxon.com/persistence-injected": "{\"data\":[],\"outputs\":\"o\",\"outputsPath\":\"/o/ns/old-name\"}"}),
            json!([{"name": "main"}]),
            &["outputs path \"/o/ns/old-name\" is kept from annotation polyaxon.com/persistence-injected; today's rules give \"/o/ns/p\""],
        ),
    ];
    for (what, annotations, containers, want) in cases {
        let r = with(annotations.clone(), containers.clone());
        assert!(
            matches!(r.decision, Decision::Patched(_)),
            "{what}: {:?}",
            r.decision
        );
        assert_eq!(r.notes.warnings, *want, "{what}");
        assert_eq!(response(&r)["response"]["warnings"], json!(want), "{what}");
        for w in &r.notes.warnings {
            assert!(
                !w.contains("/secret/value.json") && !w.contains("ap-south-1"),
                "{what}: a value in {w}"
            );
        }
    }
}

/// SPEC §8: a patched response names the selected stores and the outputs
/// path in auditAnnotations; unchanged and denied ones carry none.
#[test]
fn audit_annotations_only_on_patched_responses() {
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", pod())).expect("answered");
    assert_eq!(
        response(&r)["response"]["auditAnnotations"],
        json!({"data": "d", "outputs": "o", "outputs-path": "/o/ns/p"})
    );
    let mut opted = pod();
    opted["metadata"]["labels"] = json!({"polyaxon.com/persistence-injection": "disabled"});
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", opted)).expect("answered");
    assert!(response(&r)["response"].get("auditAnnotations").is_none());
    let mut unknown = pod();
    unknown["metadata"]["annotations"] = json!({"polyaxon.com/persistence": "data: [nope]"});
    let r = review(&config(), &body(API_V1, "Pod", "CREATE", unknown)).expect("answered");
    let out = response(&r);
    assert!(out["response"].get("auditAnnotations").is_none());
    let cause = &out["response"]["status"]["details"]["causes"][0];
    assert_eq!(cause["reason"], "unknown-store");
    assert_eq!(
        cause["field"],
        "metadata.annotations[polyaxon.com/persistence]"
    );
    assert_eq!(out["response"]["status"]["reason"], "BadRequest");
    assert_eq!(cause["message"], out["response"]["status"]["message"]);
}

/// A container that repeats a variable of ours is judged by every
/// occurrence (the runtime uses the last one), however many there are
/// (the pod view keeps at most two values of a name): repetitions of our
/// value change nothing, and one other value anywhere among them, or a
/// `valueFrom` instead of our value, is a conflict.
#[test]
fn repeated_variables_of_ours_are_judged_by_every_occurrence() {
    const VAR: &str = "POLYAXON_RUN_OUTPUTS_PATH";
    let first = review(&config(), &body(API_V1, "Pod", "CREATE", pod())).expect("answered");
    let Decision::Patched(patch) = &first.decision else {
        panic!("a plain pod is patched: {:?}", first.decision)
    };
    let mut injected = pod();
    json_patch::patch(&mut injected, patch.patch()).expect("the patch applies");
    // Without the annotation the pod is judged again, entry by entry.
    injected["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("polyaxon.com/persistence-injected");
    let env = injected["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .clone();
    let ours = env
        .iter()
        .find(|e| e["name"] == VAR)
        .expect("our outputs path")
        .clone();
    let with_env = |extra: Vec<Value>| {
        let mut p = injected.clone();
        let mut list = env.clone();
        list.extend(extra);
        p["spec"]["containers"][0]["env"] = Value::Array(list);
        review(&config(), &body(API_V1, "Pod", "CREATE", p)).expect("answered")
    };
    let other = |value: &str| json!({"name": VAR, "value": value});
    let patch_of = |r: &Reviewed| match &r.decision {
        Decision::Patched(p) => serde_json::to_value(p.patch()).expect("a patch"),
        d => panic!("patched: {d:?}"),
    };

    let base = patch_of(&with_env(vec![]));
    let repeated = with_env(vec![ours.clone(); 1_000]);
    assert_eq!(
        patch_of(&repeated),
        base,
        "our value 1,001 times: nothing more to add"
    );

    let conflicts: [(&str, Vec<Value>); 4] = [
        ("ours 1,000 times, then another", {
            let mut v = vec![ours.clone(); 1_000];
            v.push(other("/elsewhere"));
            v
        }),
        (
            "two others, then ours",
            vec![other("/x"), other("/y"), ours.clone()],
        ),
        ("another 1,000 times, then ours", {
            let mut v = vec![other("/x"); 1_000];
            v.push(ours.clone());
            v
        }),
        (
            "a valueFrom",
            vec![json!({"name": VAR, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}})],
        ),
    ];
    for (case, extra) in conflicts {
        let r = with_env(extra);
        let Decision::Denied(denial) = &r.decision else {
            panic!("{case}: denied, got {:?}", r.decision)
        };
        assert_eq!(denial.reason(), Reason::EnvConflict, "{case}: {denial}");
        assert_eq!(
            denial.field(),
            Some(format!("spec.containers[0].env[{VAR}]").as_str()),
            "{case}"
        );
    }
}

/// The uid is echoed exactly whatever it holds, on every kind of answer:
/// the patched one (whose envelope is written by hand) and those
/// serialised whole. The API server sends UUIDs; the writer must not rely
/// on it. A lone surrogate (`\ud800`) is no string at all: such a body is
/// refused as not JSON, never answered with a uid it cannot hold.
#[test]
fn uids_are_echoed_exactly_whatever_they_hold() {
    let long = format!("\"{}\"", "\\u0001\\\"é".repeat(2_000));
    let uids = [
        r#""\ud83d\ude00 paired surrogates""#,
        r#""\u2028\u2029 line separators""#,
        r#""\u0000\u001f\u007f\u0085 controls""#,
        r#""\" \\ \/ / ~0 ~1 quotes and pointers""#,
        r#""""#,
        long.as_str(),
    ];
    let objects = [
        ("patched", pod()),
        (
            "denied",
            json!({"metadata": {"name": "p", "annotations": {"polyaxon.com/persistence": "data: [nope]"}},
                "spec": {"containers": [{"name": "main"}]}}),
        ),
        (
            "invalid",
            json!({"metadata": {"name": "p"}, "spec": {"containers": "x"}}),
        ),
    ];
    for uid in uids {
        let want: String = serde_json::from_str(uid).expect("a JSON string");
        for (what, object) in &objects {
            let text = String::from_utf8(body(API_V1, "Pod", "CREATE", object.clone()))
                .expect("UTF-8")
                .replace(r#""0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1""#, uid);
            let r = review(&config(), text.as_bytes()).expect("answered");
            assert_eq!(r.decision.outcome().as_str(), *what, "{uid}");
            assert_eq!(
                response(&r)["response"]["uid"],
                want.as_str(),
                "{what} {uid}"
            );
            assert_eq!(r.subject.uid, want, "{what} {uid}");
        }
    }
    let lone = String::from_utf8(body(API_V1, "Pod", "CREATE", pod()))
        .expect("UTF-8")
        .replace(r#""0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1""#, r#""\ud800""#);
    let err = review(&config(), lone.as_bytes()).expect_err("a lone surrogate");
    assert!(matches!(err, ReviewError::NotJson { .. }), "{err}");
}

/// A parent sent as `null` (a YAML manifest's `env:` with nothing after
/// it) is added whole, like an absent one: `add` at a `/-` under `null`
/// would not apply. The patch applies and admitting the result again
/// gives no patch.
#[test]
fn null_parents_are_added_whole() {
    let c = |extra: Value| {
        let mut c = json!({"name": "main"});
        c.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        c
    };
    let cases = [
        json!({"metadata": null, "spec": {"containers": [c(json!({}))]}}),
        json!({"metadata": {"name": "p", "annotations": null}, "spec": {"containers": [c(json!({}))]}}),
        json!({"metadata": {"name": "p"}, "spec": {"volumes": null, "initContainers": null,
            "containers": [c(json!({"env": null, "volumeMounts": null}))]}}),
        json!({"metadata": {"name": "p"}, "spec": {"volumes": [], "initContainers": [],
            "containers": [c(json!({"env": [], "volumeMounts": []}))]}}),
        json!({"metadata": {"name": "p"}, "spec": {"initContainers": [c(json!({"env": null}))],
            "containers": [c(json!({"volumeMounts": null}))]}}),
        json!({"metadata": {"name": "p"}, "spec": null}),
        json!({"metadata": {"name": "p"}, "spec": {"containers": null}}),
    ];
    for pod in cases {
        let mut req = serde_json::from_slice::<Value>(&body(API_V1, "Pod", "CREATE", pod.clone()))
            .expect("JSON");
        req["request"]["name"] = json!("p");
        let r = review(&config(), req.to_string().as_bytes()).expect("answered");
        let Decision::Patched(p) = &r.decision else {
            panic!("{pod}: got {:?}", r.decision)
        };
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, p.patch()).unwrap_or_else(|e| panic!("{pod}: {e}"));
        assert!(
            patched["metadata"]["annotations"]["polyaxon.com/persistence-injected"].is_string(),
            "{patched}"
        );
        for list in ["initContainers", "containers"] {
            for c in patched["spec"][list].as_array().into_iter().flatten() {
                assert!(
                    c["env"].as_array().is_some_and(|e| !e.is_empty()),
                    "{patched}"
                );
                assert!(
                    c["volumeMounts"].as_array().is_some_and(|m| m.len() == 2),
                    "{patched}"
                );
            }
        }
        req["request"]["object"] = patched.clone();
        let again = review(&config(), req.to_string().as_bytes()).expect("answered");
        assert_eq!(
            again.decision,
            Decision::Unchanged(Skip::AlreadyInjected),
            "{patched}"
        );
    }
}
