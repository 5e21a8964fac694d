//! Pure-review cases from hostile input: answers that depend only on
//! `review_with`'s answer to a body, checked without a server (the transport
//! cases stay in `hostile.rs`). Each case names what it is about and pins the
//! exact answer: for a body the webhook cannot read, the status and text the
//! server sends (400 and the error, see [`post`]); for an AdmissionReview
//! answer, `allowed`, `status.code` and the message. Bodies are the real
//! apiserver capture `fixtures/defaults/review.json`, mutated with
//! serde_json, or spliced as text where JSON values cannot express the input
//! (duplicate keys, invalid UTF-8, 10,000 levels of nesting).

use std::sync::LazyLock;
use std::time::Instant;

use base64::Engine as _;
use persistence_webhook::{review_with, Bounds, Config};
use serde_json::{json, Value};

/// A real kube-apiserver capture: pod `webhook-pod` in `default`, one
/// container `main`, no annotation.
const REVIEW: &[u8] = include_bytes!("fixtures/defaults/review.json");
const UID: &str = "ecb6a916-9f88-4324-86e2-32ca92226e38";

/// The hostile-input config, shared with the other hostile-input file.
const CONFIG: &str = include_str!("common/hostile.yaml");

const ENV_DATA: &str = "POLYAXON_RUN_DATA_PATHS";
const ENV_OUTPUTS: &str = "POLYAXON_RUN_OUTPUTS_PATH";
const ALL_DATA: &str = r#"{"123":"/data/123","data1":"/data/1","data2":"/data/2"}"#;
const INJECTED_POINTER: &str = "/metadata/annotations/polyaxon.com~1persistence-injected";

static CONFIG_PARSED: LazyLock<Config> =
    LazyLock::new(|| Config::from_yaml(CONFIG).expect("the cases' config is valid"));

/// What the server sends for `body` with its default bounds: 200 and the
/// AdmissionReview answer, or 400 and the error's text when the body is not
/// one (`tests/server.rs` checks the server does exactly this).
fn post(body: impl AsRef<[u8]>) -> (u16, String) {
    match review_with(&CONFIG_PARSED, &Bounds::default(), body.as_ref()) {
        Ok(reviewed) => (
            200,
            String::from_utf8(reviewed.response.to_vec()).expect("the answer is UTF-8"),
        ),
        Err(e) => (400, format!("{e}\n")),
    }
}

/// The AdmissionReview answer for `body`, which must get one.
fn review_answer(body: impl AsRef<[u8]>) -> Value {
    let (status, text) = post(body);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("an AdmissionReview answer")
}

fn base() -> Value {
    serde_json::from_slice(REVIEW).expect("the fixture is JSON")
}

fn to_body(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).expect("serialises")
}

/// The fixture with `needle` (which occurs exactly once) replaced.
fn splice(needle: &str, replacement: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(REVIEW).expect("the fixture is UTF-8");
    let at: Vec<usize> = text.match_indices(needle).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "{needle:?} must occur once in the fixture");
    let mut out = REVIEW[..at[0]].to_vec();
    out.extend_from_slice(replacement);
    out.extend_from_slice(&REVIEW[at[0] + needle.len()..]);
    out
}

fn annotate(review: &mut Value, annotations: Value) {
    review["request"]["object"]["metadata"]["annotations"] = annotations;
}

/// A denial or an Invalid answer: not allowed, code 400, no patch, and a
/// message holding every fragment. The message, for further checks.
fn assert_refused(answer: &Value, fragments: &[&str]) -> String {
    let r = &answer["response"];
    assert_eq!(r["allowed"], false, "{answer}");
    assert_eq!(r["status"]["code"], 400, "{answer}");
    assert_eq!(r["status"]["status"], "Failure", "{answer}");
    assert!(r.get("patch").is_none(), "{answer}");
    let message = r["status"]["message"].as_str().expect("a message");
    for f in fragments {
        assert!(message.contains(f), "{f:?} not in {message:?}");
    }
    message.to_owned()
}

/// The decoded patch's operations.
fn ops_of(answer: &Value) -> Vec<Value> {
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    let b64 = answer["response"]["patch"]
        .as_str()
        .expect("a base64 patch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    match serde_json::from_slice(&raw).expect("the patch is JSON") {
        Value::Array(ops) => ops,
        other => panic!("the patch is not a list: {other}"),
    }
}

/// The review's pod with the answer's patch applied (json_patch).
fn patched_pod(review: &Value, answer: &Value) -> Value {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops_of(answer))).expect("a JSON Patch");
    let mut pod = review["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies");
    pod
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

/// The fixture with `n` copies of its container, named `c-0`...
fn with_containers(n: usize) -> Value {
    let mut review = base();
    let template = review["request"]["object"]["spec"]["containers"][0].clone();
    let containers: Vec<Value> = (0..n)
        .map(|i| {
            let mut c = template.clone();
            c["name"] = json!(format!("c-{i}"));
            c
        })
        .collect();
    review["request"]["object"]["spec"]["containers"] = Value::Array(containers);
    review
}

/// Nine levels of nine aliases: 9^9 (387 million) strings if expanded.
fn alias_bomb(indent: &str) -> String {
    let mut yaml = format!("{indent}- &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        yaml.push_str(&format!(
            "{indent}- &a{level} [{}]\n",
            [prev.as_str(); 9].join(", ")
        ));
    }
    yaml
}

#[test]
fn invalid_utf8_is_400_not_json() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a body of invalid bytes",
            b"\xff\xfe\xfd{}".to_vec(),
            "the body is not JSON: invalid UTF-8 at byte 0\n",
        ),
        (
            "request.name",
            splice(
                r#""name":"webhook-pod","namespace":"default","operation""#,
                b"\"name\":\"webhook-\xffpod\",\"namespace\":\"default\",\"operation\"",
            ),
            "the body is not JSON: invalid UTF-8 at byte 357\n",
        ),
    ];
    for (what, body, want) in cases {
        let (status, text) = post(body);
        assert_eq!((status, text.as_str()), (400, want), "{what}");
    }
}

/// A body with invalid UTF-8 anywhere is not JSON (RFC 8259 section 8.1),
/// even in a string the webhook does not read.
#[test]
fn invalid_utf8_in_skipped_strings_is_400_not_json() {
    let cases = [
        (
            "the pod's image, inside request.object",
            splice(
                r#""image":"busybox:1.36""#,
                b"\"image\":\"busybox:\xc3\x281.36\"",
            ),
        ),
        (
            "request.userInfo.username",
            splice(
                r#""username":"kapi-admin""#,
                b"\"username\":\"kapi-\xedadmin\"",
            ),
        ),
    ];
    for (what, body) in cases {
        let (status, text) = post(body);
        assert_eq!(status, 400, "{what}: {text}");
        assert!(
            text.starts_with("the body is not JSON: invalid UTF-8 at byte"),
            "{what}: {text}"
        );
    }
}

#[test]
fn json_nested_10000_deep_is_answered_without_a_crash() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");

    // Where a string or a map is expected, the typed view stops at depth 1.
    let (status, body) = post(deep.clone());
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        "the body is not an AdmissionReview: invalid type: sequence, expected a string at line 1 column 1\n"
    );

    let deep_uid = splice(
        &format!(r#""uid":"{UID}""#),
        format!(r#""uid":{deep}"#).as_bytes(),
    );
    let (status, body) = post(deep_uid);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        "the body is not an AdmissionReview: invalid type: sequence, expected a string at line 1 column 78\n"
    );

    // In a field the webhook skips, serde_json skips it without recursing:
    // the pod is reviewed as usual.
    let deep_status = splice(r#""status":{}"#, format!(r#""status":{deep}"#).as_bytes());
    let answer = review_answer(deep_status);
    assert_eq!(answer["response"]["uid"], UID);
    assert!(!ops_of(&answer).is_empty());

    // Compared as a serde_json::Value: the recursion limit refuses it, so a
    // pod volume of our name that cannot be compared with ours is not ours:
    // the store's volume takes another name (SPEC §4), never a denial.
    let mut review = base();
    review["request"]["object"]["spec"]["volumes"] =
        json!([{"name": "pw-data1", "hostPath": "DEEP"}]);
    let body = text(to_body(&review)).replacen("\"DEEP\"", &deep, 1);
    let answer = review_answer(body);
    let renamed = ops_of(&answer)
        .iter()
        .any(|op| op["path"] == "/spec/volumes/-" && op["value"]["name"] == "pw--2-data1");
    assert!(renamed, "{answer}");

    // In the selection annotation: a list where a name is expected is
    // refused at its first level, the rest skipped unread.
    for (key, want) in [
        (
            "outputs",
            "annotation polyaxon.com/persistence: outputs must be a single store name, not a list",
        ),
        (
            "data",
            "annotation polyaxon.com/persistence is not a valid selection: data[0]: invalid type: sequence, expected a string",
        ),
    ] {
        let mut review = base();
        annotate(
            &mut review,
            json!({"polyaxon.com/persistence": format!("{{\"{key}\": DEEP}}")}),
        );
        let body = text(to_body(&review)).replacen("DEEP", &deep, 1);
        let answer = review_answer(body);
        assert_refused(&answer, &[want, "Stores available in namespace \"default\""]);
    }
}

#[test]
fn duplicate_json_keys() {
    let uid = format!(r#""uid":"{UID}""#);
    let meta = r#""metadata":{"name":"webhook-pod""#;
    let with_annotations = |annotations: &str| {
        splice(
            meta,
            format!(r#""metadata":{{"annotations":{annotations},"name":"webhook-pod""#).as_bytes(),
        )
    };

    // Without a single uid there is nothing to answer: 400.
    let refused: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "two uids",
            splice(&uid, format!(r#"{uid},"uid":"another""#).as_bytes()),
            "the body is not an AdmissionReview: duplicate field `uid`",
        ),
        (
            "two request.object",
            splice(r#""oldObject":null"#, br#""oldObject":null,"object":{}"#),
            "the body is not an AdmissionReview: duplicate field `object`",
        ),
        (
            "two apiVersion",
            splice(
                r#""apiVersion":"admission.k8s.io/v1","request""#,
                br#""apiVersion":"admission.k8s.io/v1","apiVersion":"admission.k8s.io/v1beta1","request""#,
            ),
            "the body is not an AdmissionReview: duplicate field `apiVersion`",
        ),
    ];
    for (what, body, want) in refused {
        let (status, text) = post(body);
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.starts_with(want), "{what}: {text}");
    }

    // With a uid: an Invalid answer naming the duplicate.
    let invalid: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "two polyaxon.com/persistence annotations",
            with_annotations(
                r#"{"polyaxon.com/persistence":"data: [data1]","polyaxon.com/persistence":"data: [data2]"}"#,
            ),
            "request.object is not a valid Pod: duplicate annotation \"polyaxon.com/persistence\"",
        ),
        (
            "two polyaxon.com/outputs-subpath annotations",
            with_annotations(
                r#"{"polyaxon.com/outputs-subpath":"a","polyaxon.com/outputs-subpath":"b"}"#,
            ),
            "request.object is not a valid Pod: duplicate annotation \"polyaxon.com/outputs-subpath\"",
        ),
        (
            "two operations",
            splice(r#""operation":"CREATE""#, br#""operation":"CREATE","operation":"UPDATE""#),
            "malformed AdmissionReview: duplicate field `operation`",
        ),
        (
            "a container with two names",
            splice(r#""name":"main""#, br#""name":"main","name":"other""#),
            "request.object is not a valid Pod: duplicate field `name`",
        ),
    ];
    for (what, body, want) in invalid {
        let answer = review_answer(body);
        assert_eq!(answer["response"]["uid"], UID, "{what}");
        assert_refused(&answer, &[want]);
    }

    // A repeated annotation the webhook does not read is skipped.
    let answer = review_answer(with_annotations(
        r#"{"example.com/x":"1","example.com/x":"2"}"#,
    ));
    assert!(!ops_of(&answer).is_empty());

    // A repeated opt-out label: the last one wins, as in Go's encoding/json
    // (the API server's own decoder).
    let labels = r#""labels":{"app":"demo"}"#;
    let answer = review_answer(splice(
            labels,
            br#""labels":{"polyaxon.com/persistence-injection":"disabled","polyaxon.com/persistence-injection":"enabled"}"#,
        ));
    assert!(!ops_of(&answer).is_empty(), "enabled last: patched");
    let answer = review_answer(splice(
            labels,
            br#""labels":{"polyaxon.com/persistence-injection":"enabled","polyaxon.com/persistence-injection":"disabled"}"#,
        ));
    assert_eq!(
        answer["response"],
        json!({"uid": UID, "allowed": true}),
        "disabled last: unchanged"
    );
}

#[test]
fn null_request_null_object_missing_uid() {
    let mut no_request = base();
    no_request["request"] = Value::Null;
    let mut no_uid = base();
    no_uid["request"]
        .as_object_mut()
        .expect("request")
        .remove("uid");
    let mut null_uid = base();
    null_uid["request"]["uid"] = Value::Null;
    for (what, review, want) in [
        (
            "request: null",
            no_request,
            "the body is not an AdmissionReview: it has no request\n",
        ),
        (
            "no request.uid",
            no_uid,
            "the body is not an AdmissionReview: missing field `uid`",
        ),
        (
            "request.uid: null",
            null_uid,
            "the body is not an AdmissionReview: invalid type: null, expected a string",
        ),
    ] {
        let (status, text) = post(to_body(&review));
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.starts_with(want), "{what}: {text}");
    }

    let mut null_object = base();
    null_object["request"]["object"] = Value::Null;
    let mut no_object = base();
    no_object["request"]
        .as_object_mut()
        .expect("request")
        .remove("object");
    for (what, review) in [("object: null", null_object), ("no object", no_object)] {
        let answer = review_answer(to_body(&review));
        assert_eq!(answer["response"]["uid"], UID, "{what}");
        let message = assert_refused(&answer, &["request.object is missing"]);
        assert_eq!(message, "request.object is missing", "{what}");
    }

    // An empty uid is still a uid, echoed as sent.
    let mut empty_uid = base();
    empty_uid["request"]["uid"] = json!("");
    let answer = review_answer(to_body(&empty_uid));
    assert_eq!(answer["response"]["uid"], "");
    assert!(!ops_of(&answer).is_empty());

    // metadata: null and spec: null are absent parts: the patch adds what it
    // can, and it applies.
    let mut null_metadata = base();
    null_metadata["request"]["object"]["metadata"] = Value::Null;
    let answer = review_answer(to_body(&null_metadata));
    let pod = patched_pod(&null_metadata, &answer);
    assert_eq!(
        pod["metadata"]["annotations"]["polyaxon.com/persistence-injected"],
        r#"{"data":["123","data1","data2"],"outputs":"outputs1","outputsPath":"/outputs/1/default/webhook-pod"}"#
    );
    let mut null_spec = base();
    null_spec["request"]["object"]["spec"] = Value::Null;
    let answer = review_answer(to_body(&null_spec));
    let ops = ops_of(&answer);
    assert_eq!(ops.len(), 1, "only the annotation: {ops:?}");
    assert_eq!(ops[0]["path"], "/metadata/annotations");
    patched_pod(&null_spec, &answer);
}

#[test]
fn a_pod_with_5000_containers_is_denied_by_the_bounds() {
    // Before the bounds, 5,000 containers got a 3.7 MB patch (a ~100×
    // amplification of the request, SPEC §5 "Bounded"). Each container here
    // would get 6 items (4 mounts, 2 env vars).
    let body = to_body(&with_containers(5_000));
    assert!(body.len() > 1024 * 1024, "{} bytes", body.len());
    let answer = review_answer(body);
    let message = assert_refused(
        &answer,
        &["the patch would add 30,000 items (5,000 containers × 6) / about 4.0 MiB, over the limit of 10,000 items (--max-injected-items) and the limit of 1.0 MiB (1,048,576 bytes, --max-patch-bytes); target fewer containers with containers: in annotation polyaxon.com/persistence, or select fewer stores"],
    );
    assert!(message.len() < 2048, "{} bytes", message.len());
    assert!(
        answer.to_string().len() < 2048,
        "the whole answer is small: {} bytes",
        answer.to_string().len()
    );

    // Over the byte bound alone: 1,300 containers are 7,800 items.
    let answer = review_answer(to_body(&with_containers(1_300)));
    assert_refused(
        &answer,
        &["the patch would add 7,800 items (1,300 containers × 6) / about 1.0 MiB, over the limit of 1.0 MiB (1,048,576 bytes, --max-patch-bytes)"],
    );
}

#[test]
fn a_pod_just_under_the_bounds_is_patched_in_full() {
    const N: usize = 1_200;
    // Correctness at scale, not speed: a debug build on a busy machine may
    // take longer than the 2 s the other cases use.
    let review = with_containers(N);
    let started = Instant::now();
    let answer = review_answer(to_body(&review));
    let took = started.elapsed();
    let ops = ops_of(&answer);
    let patch_bytes = serde_json::to_vec(&ops).expect("ops").len();
    assert!(patch_bytes <= 1024 * 1024, "{patch_bytes} bytes");
    // The container has no env: its two env vars come as one list.
    let env_ops = ops
        .iter()
        .filter(|op| op["path"].as_str().is_some_and(|p| p.ends_with("/env")))
        .count();
    assert_eq!(env_ops, N, "one env list per container");
    let mount_ops = ops
        .iter()
        .filter(|op| {
            op["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/volumeMounts/-"))
        })
        .count();
    assert_eq!(mount_ops, 4 * N, "four mounts per container");
    // 1 annotation + 4 volumes + per container (4 mounts + 1 env list).
    assert_eq!(ops.len(), 1 + 4 + 5 * N);

    let pod = patched_pod(&review, &answer);
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), N);
    for (i, c) in containers.iter().enumerate() {
        assert_eq!(c["name"], format!("c-{i}"));
        assert_eq!(env_value(c, ENV_DATA), Some(ALL_DATA), "c-{i}");
        assert_eq!(
            env_value(c, ENV_OUTPUTS),
            Some("/outputs/1/default/webhook-pod"),
            "c-{i}"
        );
        assert_eq!(c["volumeMounts"].as_array().map(Vec::len), Some(5), "c-{i}");
    }
    eprintln!("{N} containers reviewed in {took:?}, patch of {patch_bytes} bytes");
}

#[test]
fn annotations_of_256_kib() {
    const SIZE: usize = 256 * 1024;

    // Someone else's annotation: kept byte for byte, ours added beside it.
    let blob = "x".repeat(SIZE);
    let mut review = base();
    annotate(&mut review, json!({"example.com/blob": blob}));
    let answer = review_answer(to_body(&review));
    let ops = ops_of(&answer);
    assert_eq!(ops[0]["path"], INJECTED_POINTER);
    let pod = patched_pod(&review, &answer);
    assert_eq!(pod["metadata"]["annotations"]["example.com/blob"], blob);

    // Our annotation: 256 KiB of YAML comment before the selection.
    let selection = format!("#{}\ndata: [data1]\n", "c".repeat(SIZE));
    let mut review = base();
    annotate(&mut review, json!({"polyaxon.com/persistence": selection}));
    let answer = review_answer(to_body(&review));
    let pod = patched_pod(&review, &answer);
    let main = &pod["spec"]["containers"][0];
    assert_eq!(env_value(main, ENV_DATA), Some(r#"{"data1":"/data/1"}"#));

    // A 256 KiB store name: denied, the name quoted clipped.
    let name = "n".repeat(SIZE);
    let mut review = base();
    annotate(
        &mut review,
        json!({"polyaxon.com/persistence": format!("data: [{name}]")}),
    );
    let answer = review_answer(to_body(&review));
    let message = assert_refused(
        &answer,
        &[
            "annotation polyaxon.com/persistence: data store \"nnnn",
            "... (262144 bytes)\" does not exist. Stores available in namespace \"default\": data: 123, data1, data2; outputs: 2024, outputs1",
        ],
    );
    assert!(message.len() < 1024, "{} bytes", message.len());
}

#[test]
fn yaml_alias_bomb_is_denied_not_expanded() {
    let cases = [
        (
            "inside the data list",
            format!("data:\n{}", alias_bomb("  ")),
            "annotation polyaxon.com/persistence is not a valid selection: data[0]: invalid type: sequence, expected a string",
        ),
        (
            "as the outputs value",
            format!("outputs:\n{}", alias_bomb("  ")),
            "annotation polyaxon.com/persistence: outputs must be a single store name, not a list",
        ),
    ];
    for (what, selection, want) in cases {
        let mut review = base();
        annotate(&mut review, json!({"polyaxon.com/persistence": selection}));
        // Expanded, this would be 387 million strings: an answer at all
        // shows it was not expanded (the time is printed, not asserted).
        let started = Instant::now();
        let answer = review_answer(to_body(&review));
        let took = started.elapsed();
        assert_refused(
            &answer,
            &[want, "Stores available in namespace \"default\""],
        );
        eprintln!("alias bomb {what}: answered in {took:?}");
    }
}

#[test]
fn numbers_booleans_and_nulls_where_strings_are_expected() {
    for (what, uid) in [("42", json!(42)), ("true", json!(true))] {
        let mut review = base();
        review["request"]["uid"] = uid;
        let (status, text) = post(to_body(&review));
        assert_eq!(status, 400, "uid {what}: {text}");
        assert!(
            text.starts_with("the body is not an AdmissionReview: invalid type:"),
            "uid {what}: {text}"
        );
        assert!(text.contains("expected a string"), "uid {what}: {text}");
    }

    // In the pod: an Invalid answer naming the type.
    let cases = [
        (
            "a number annotation value",
            "/metadata/annotations",
            json!({"polyaxon.com/persistence": 1}),
            "request.object is not a valid Pod: invalid type: integer `1`, expected a string",
        ),
        (
            "a boolean annotation value",
            "/metadata/annotations",
            json!({"polyaxon.com/outputs-subpath": true}),
            "request.object is not a valid Pod: invalid type: boolean `true`, expected a string",
        ),
        (
            "a null annotation value",
            "/metadata/annotations",
            json!({"polyaxon.com/unique-name": null}),
            "request.object is not a valid Pod: invalid type: null, expected a string",
        ),
        (
            "a number container name",
            "/spec/containers/0/name",
            json!(7),
            "request.object is not a valid Pod: invalid type: integer `7`, expected a string",
        ),
        (
            "a null container name",
            "/spec/containers/0/name",
            Value::Null,
            "request.object is not a valid Pod: invalid type: null, expected a string",
        ),
        (
            "a boolean volume name",
            "/spec/volumes/0/name",
            json!(false),
            "request.object is not a valid Pod: invalid type: boolean `false`, expected a string",
        ),
    ];
    for (what, pointer, value, want) in cases {
        let mut review = base();
        let pod = &mut review["request"]["object"];
        let slot = match pointer {
            "/metadata/annotations" => &mut pod["metadata"]["annotations"],
            _ => pod.pointer_mut(pointer).expect("a field of the fixture"),
        };
        *slot = value;
        let answer = review_answer(to_body(&review));
        assert_eq!(answer["response"]["uid"], UID, "{what}");
        assert_refused(&answer, &[want]);
    }

    // In the selection: a YAML number or boolean is read as the store name
    // it spells, in YAML and in JSON alike.
    for selection in ["data: [123]", r#"{"data": [123]}"#, "data: ['123']"] {
        let mut review = base();
        annotate(&mut review, json!({"polyaxon.com/persistence": selection}));
        let answer = review_answer(to_body(&review));
        let pod = patched_pod(&review, &answer);
        assert_eq!(
            env_value(&pod["spec"]["containers"][0], ENV_DATA),
            Some(r#"{"123":"/data/123"}"#),
            "{selection}"
        );
    }
    for (selection, want) in [
        ("data: [true]", "data store \"true\" does not exist"),
        ("data: [1.50]", "data store \"1.50\" does not exist"),
        ("data: [0x1F]", "data store \"0x1F\" does not exist"),
        (
            r#"{"data": [false]}"#,
            "data store \"false\" does not exist",
        ),
        ("data: [null]", "data store \"null\" does not exist"),
        ("data: [~]", "data store \"~\" does not exist"),
        (
            "containers: [7]",
            "containers names \"7\", which is not a container",
        ),
    ] {
        let mut review = base();
        annotate(&mut review, json!({"polyaxon.com/persistence": selection}));
        let answer = review_answer(to_body(&review));
        assert_refused(&answer, &["annotation polyaxon.com/persistence", want]);
    }
    // `data: null` and `outputs: null` mean absent.
    let mut review = base();
    annotate(
        &mut review,
        json!({"polyaxon.com/persistence": "data: null\noutputs: null"}),
    );
    let answer = review_answer(to_body(&review));
    let pod = patched_pod(&review, &answer);
    assert_eq!(
        env_value(&pod["spec"]["containers"][0], ENV_DATA),
        Some(ALL_DATA)
    );
}

/// `outputs: 2024` names the outputs store "2024" the way `data: [123]`
/// names the data store "123"; other scalars are refused with the field
/// named (where `data: [true]` reads the name "true").
#[test]
fn a_number_as_the_outputs_store_is_read_as_its_name() {
    for selection in ["outputs: 2024", r#"{"outputs": 2024}"#] {
        let mut review = base();
        annotate(&mut review, json!({"polyaxon.com/persistence": selection}));
        let answer = review_answer(to_body(&review));
        let pod = patched_pod(&review, &answer);
        assert_eq!(
            env_value(&pod["spec"]["containers"][0], ENV_OUTPUTS),
            Some("/outputs/2024/default/webhook-pod"),
            "{selection}"
        );
    }
    for (selection, want) in [
        ("outputs: true", "outputs: invalid type: boolean `true`, expected an outputs store name at line 1 column 10."),
        ("outputs: 20.24", "outputs: invalid type: floating point `20.24`, expected an outputs store name at line 1 column 10."),
        ("outputs: {a: b}", "outputs: invalid type: map, expected an outputs store name at line 1 column 10."),
    ] {
        let mut review = base();
        annotate(&mut review, json!({"polyaxon.com/persistence": selection}));
        let answer = review_answer(to_body(&review));
        assert_refused(
            &answer,
            &[&format!("annotation polyaxon.com/persistence is not a valid selection: {want} Stores available in namespace \"default\"")],
        );
    }
}

#[test]
fn unicode_tilde_and_slash_in_every_name() {
    let namespace = "nämespace~1/ü";
    let mut review = base();
    review["request"]["namespace"] = json!(namespace);
    let pod = &mut review["request"]["object"];
    pod["metadata"]["namespace"] = json!(namespace);
    pod["metadata"]["annotations"] = json!({
        "a~b/c": "ü",
        "ключ/~0": "~1",
        "polyaxon.com/persistence": "containers: [\"mäin~0/x\"]",
    });
    pod["spec"]["volumes"][0]["name"] = json!("völ/~1");
    let main = &mut pod["spec"]["containers"][0];
    main["name"] = json!("mäin~0/x");
    main["volumeMounts"][0]["name"] = json!("völ/~1");
    let mut side = main.clone();
    side["name"] = json!("side/~car");
    pod["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(side);

    let answer = review_answer(to_body(&review));
    let ops = ops_of(&answer);
    let paths: Vec<&str> = ops.iter().filter_map(|op| op["path"].as_str()).collect();
    assert_eq!(paths[0], INJECTED_POINTER, "{paths:?}");
    // Names never become pointer tokens: indices do, and the one key we
    // write is escaped (`/` as `~1`).
    for p in &paths[1..] {
        assert!(!p.contains('~'), "{p}");
    }
    assert!(
        paths.iter().all(|p| !p.contains("/containers/1/")),
        "only the selected container: {paths:?}"
    );

    let patched = patched_pod(&review, &answer);
    let sub_path = "nämespace~1/ü/webhook-pod";
    assert_eq!(
        patched["metadata"]["annotations"],
        json!({
            "a~b/c": "ü",
            "ключ/~0": "~1",
            "polyaxon.com/persistence": "containers: [\"mäin~0/x\"]",
            "polyaxon.com/persistence-injected": format!(
                r#"{{"data":["123","data1","data2"],"outputs":"outputs1","outputsPath":"/outputs/1/{sub_path}"}}"#
            ),
        })
    );
    let main = &patched["spec"]["containers"][0];
    assert_eq!(main["name"], "mäin~0/x");
    assert_eq!(
        env_value(main, ENV_OUTPUTS),
        Some(format!("/outputs/1/{sub_path}").as_str())
    );
    let outputs_mount = main["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "pw-outputs1")
        .expect("the outputs mount");
    assert_eq!(outputs_mount["subPath"], sub_path);
    assert_eq!(main["volumeMounts"][0]["name"], "völ/~1");
    assert_eq!(patched["spec"]["volumes"][0]["name"], "völ/~1");
    let side = &patched["spec"]["containers"][1];
    assert_eq!(side["name"], "side/~car");
    assert!(side.get("env").is_none(), "{side}");

    // The patched pod, admitted again, needs no patch (and is told again
    // that its sidecar gets no stores, naming it verbatim).
    let mut again = review.clone();
    again["request"]["object"] = patched;
    let answer = review_answer(to_body(&again));
    assert_eq!(
        answer["response"],
        json!({"uid": UID, "allowed": true, "warnings": [
            "container side/~car gets no stores: annotation polyaxon.com/persistence targets only the containers it names in containers:"
        ]})
    );

    // Unicode in a store name and in the sub-path annotation comes back
    // verbatim in the denial and in the patch.
    let mut review = base();
    annotate(
        &mut review,
        json!({"polyaxon.com/persistence": "data: [dätä~1/x]"}),
    );
    let answer = review_answer(to_body(&review));
    assert_refused(&answer, &["data store \"dätä~1/x\" does not exist"]);
    let mut review = base();
    annotate(
        &mut review,
        json!({"polyaxon.com/outputs-subpath": "rün/~0/ü"}),
    );
    let answer = review_answer(to_body(&review));
    let patched = patched_pod(&review, &answer);
    assert_eq!(
        env_value(&patched["spec"]["containers"][0], ENV_OUTPUTS),
        Some("/outputs/1/rün/~0/ü")
    );
    // A namespace that would climb out of the outputs store.
    let mut review = base();
    review["request"]["namespace"] = json!("..");
    review["request"]["object"]["metadata"]["namespace"] = json!("..");
    let answer = review_answer(to_body(&review));
    assert_refused(
        &answer,
        &["sub-path \"../webhook-pod\" must not contain '.' or '..' segments"],
    );
}

#[test]
fn v1beta1_is_answered_in_kind() {
    let mut review = base();
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let answer = review_answer(to_body(&review));
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], UID);
    patched_pod(&review, &answer);

    // A malformed v1beta1 request is refused in v1beta1 too.
    review["request"]["operation"] = json!(5);
    let answer = review_answer(to_body(&review));
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1beta1");
    assert_eq!(answer["response"]["uid"], UID);
    assert_refused(
        &answer,
        &["malformed AdmissionReview: invalid type: integer `5`"],
    );

    // A version the webhook does not speak.
    review["apiVersion"] = json!("admission.k8s.io/v2");
    let (status, text) = post(to_body(&review));
    assert_eq!(status, 400, "{text}");
    assert_eq!(
        text,
        "unsupported AdmissionReview apiVersion \"admission.k8s.io/v2\" (expected admission.k8s.io/v1 or admission.k8s.io/v1beta1)\n"
    );
}
