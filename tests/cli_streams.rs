//! `mutate` on the manifests a repository holds and `test` on a directory of
//! cases (SPEC §6), run as a CI job runs them: streams mixing Pods, every
//! workload kind, a `List` and unrelated kinds, a denial in the middle, the
//! exit statuses, and the JUnit report read back with an XML parser.

use std::path::Path;

use assert_cmd::Command;
use serde::Deserialize;
use serde_json::{json, Value};

const CONFIG: &str = "examples/persistence.yaml";
const UID: &str = "00000000-0000-0000-0000-000000000000";

fn bin() -> Command {
    let mut cmd = Command::cargo_bin("persistence-webhook").expect("the binary is built");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PERSISTENCE_WEBHOOK_CONFIG");
    cmd
}

/// `mutate --config examples/persistence.yaml -f - ARGS` on `stdin`.
fn mutate(stdin: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin()
        .args(["mutate", "--config", CONFIG, "-f", "-"])
        .args(args)
        .write_stdin(stdin)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    )
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn template(kind: &str, name: &str, annotations: Value, spec: Value) -> Value {
    let tpl = json!({"metadata": {"labels": {"app": name}, "annotations": annotations},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
    let (api, spec) = match kind {
        "Job" => ("batch/v1", json!({"template": tpl})),
        "CronJob" => (
            "batch/v1",
            json!({"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": tpl}}}),
        ),
        _ => {
            let mut s = json!({"selector": {"matchLabels": {"app": name}}, "template": tpl});
            if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
                s.extend(extra.clone());
            }
            ("apps/v1", s)
        }
    };
    json!({"apiVersion": api, "kind": kind,
        "metadata": {"name": name, "namespace": "team-a", "labels": {"tier": "ml"}}, "spec": spec})
}

fn pod(name: &str, selection: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a",
            "annotations": {"polyaxon.com/persistence": selection}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

const DATA1: &str = "data: [data1]";

/// The stream of the tests: every kind, a List, unrelated kinds, and (when
/// `denied`) a Pod selecting a store that does not exist, in the middle.
fn stream(denied: bool) -> Vec<Value> {
    let sel = json!({"polyaxon.com/persistence": DATA1});
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "team-a"},
            "data": {"resume": "yes", "n": "1_000"}}),
        pod("solo", DATA1),
        template("Job", "train", sel.clone(), json!({})),
        template("CronJob", "nightly", sel.clone(), json!({})),
        template("Deployment", "web", sel.clone(), json!({"replicas": 2})),
    ];
    if denied {
        docs.push(pod("bad", "data: [imagenet]"));
    }
    docs.extend([
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        template("StatefulSet", "db", sel.clone(), json!({"serviceName": "db"})),
        template("DaemonSet", "agent", sel.clone(), json!({})),
        template("ReplicaSet", "rs", sel.clone(), json!({})),
        json!({"apiVersion": "v1", "kind": "List", "items": [
            pod("listed", DATA1),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "listed-cfg"}}),
            template("Job", "listed-job", sel, json!({})),
        ]}),
    ]);
    docs
}

fn as_yaml_stream(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).expect("YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The outputs path the object's pod (or template) got.
fn outputs_path(object: &Value) -> Option<String> {
    let spec = match object["kind"].as_str()? {
        "Pod" => &object["spec"],
        "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &object["spec"]["template"]["spec"],
    };
    spec["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == "POLYAXON_RUN_OUTPUTS_PATH")?["value"]
        .as_str()
        .map(str::to_owned)
}

/// The object without its pod template (what `mutate` must leave alone).
fn without_template(object: &Value) -> Value {
    let mut o = object.clone();
    match o["kind"].as_str() {
        Some("CronJob") => o["spec"]["jobTemplate"]["spec"]["template"] = Value::Null,
        Some("Pod") => {
            o["spec"] = Value::Null;
            o["metadata"]["annotations"] = Value::Null;
        }
        _ => o["spec"]["template"] = Value::Null,
    }
    o
}

#[test]
fn a_stream_comes_out_in_order_with_each_template_mutated_and_a_denial_reported() {
    let input = stream(true);
    let (code, stdout, stderr) = mutate(&as_yaml_stream(&input), &[]);
    assert_eq!(code, Some(1), "a denial exits 1\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one denial, one line: {stderr}");
    assert!(
        lines[0].starts_with("document 6 (Pod team-a/bad): denied: annotation polyaxon.com/persistence: data store \"imagenet\" does not exist"),
        "{stderr}"
    );
    let out = docs(&stdout);
    assert_eq!(
        out.len(),
        input.len(),
        "every document is printed\n{stdout}"
    );
    let names = |d: &[Value]| -> Vec<(Value, Value)> {
        d.iter()
            .map(|o| (o["kind"].clone(), o["metadata"]["name"].clone()))
            .collect()
    };
    assert_eq!(names(&out), names(&input), "the order is unchanged");
    let ns = "/outputs/1/team-a";
    let want = [
        (1, None),
        (2, Some(format!("{ns}/solo"))),
        (3, Some(format!("{ns}/train"))),
        (4, Some(format!("{ns}/nightly-xxxxxxxx"))),
        (5, Some(format!("{ns}/web-xxxxxxxxxx-{UID}"))),
        (6, None),
        (7, None),
        (8, Some(format!("{ns}/db-0"))),
        (9, Some(format!("{ns}/agent-{UID}"))),
        (10, Some(format!("{ns}/rs-{UID}"))),
    ];
    for (i, path) in want {
        let (got, given) = (&out[i - 1], &input[i - 1]);
        assert_eq!(outputs_path(got), path, "document {i}");
        if path.is_none() {
            assert_eq!(got, given, "document {i} passes through untouched");
        } else {
            assert_eq!(
                without_template(got),
                without_template(given),
                "document {i}: only the template changes"
            );
        }
    }
    let list = &out[10]["items"];
    assert_eq!(
        outputs_path(&list[0]).as_deref(),
        Some("/outputs/1/team-a/listed")
    );
    assert_eq!(
        list[1], input[10]["items"][1],
        "a ConfigMap in a List is untouched"
    );
    assert_eq!(
        outputs_path(&list[2]).as_deref(),
        Some("/outputs/1/team-a/listed-job")
    );
    assert!(
        stdout.contains("resume: \"yes\""),
        "YAML 1.1-safe: {stdout}"
    );

    let (code, stdout_ok, stderr) = mutate(&as_yaml_stream(&stream(false)), &[]);
    assert_eq!((code, stderr.as_str()), (Some(0), ""), "no denial: exit 0");
    assert_eq!(docs(&stdout_ok).len(), input.len() - 1);
}

#[test]
fn output_patch_and_review_are_json_lists_one_entry_per_pod_or_workload() {
    let input = stream(true);
    let text = as_yaml_stream(&input);
    let (code, stdout, _) = mutate(&text, &["--output", "patch"]);
    assert_eq!(code, Some(1));
    let entries: Vec<Value> = serde_json::from_str(&stdout).expect("a JSON list");
    let at: Vec<(u64, Option<u64>, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["document"].as_u64().expect("document"),
                e["item"].as_u64(),
                e["kind"].as_str().expect("kind"),
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            (2, None, "Pod"),
            (3, None, "Job"),
            (4, None, "CronJob"),
            (5, None, "Deployment"),
            (6, None, "Pod"),
            (8, None, "StatefulSet"),
            (9, None, "DaemonSet"),
            (10, None, "ReplicaSet"),
            (11, Some(1), "Pod"),
            (11, Some(3), "Job"),
        ]
    );
    let (_, mutated, _) = mutate(&text, &[]);
    let mutated = docs(&mutated);
    for e in &entries {
        let i = e["document"].as_u64().expect("document") as usize - 1;
        let (mut doc, want) = match e["item"].as_u64() {
            None => (input[i].clone(), mutated[i].clone()),
            Some(j) => (
                input[i]["items"][j as usize - 1].clone(),
                mutated[i]["items"][j as usize - 1].clone(),
            ),
        };
        let patch: json_patch::Patch =
            serde_json::from_value(e["patch"].clone()).expect("a JSON Patch");
        json_patch::patch(&mut doc, &patch).expect("the patch applies to the document");
        assert_eq!(doc, want, "{e}: the patch gives the printed document");
    }
    assert_eq!(entries[4]["outcome"], "denied");
    assert_eq!(entries[4]["reason"], "unknown-store");
    assert_eq!(entries[4]["patch"], json!([]));

    let (_, stdout, _) = mutate(&text, &["--output", "review"]);
    let reviews: Vec<Value> = serde_json::from_str(&stdout).expect("a JSON list");
    assert_eq!(reviews.len(), entries.len());
    for r in &reviews {
        let response = &r["review"]["response"];
        assert_eq!(response["uid"], UID, "{r}");
        assert_eq!(response["allowed"], json!(r["outcome"] != "denied"), "{r}");
    }
}

#[test]
fn input_errors_exit_2_naming_the_document() {
    let job_without_template = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "broken"}, "spec": {}});
    let cases = [
        (
            "a Job without a template",
            as_yaml_stream(&[pod("ok", DATA1), job_without_template]),
            vec![],
            vec!["document 2 (Job broken)", "spec.template is missing"],
        ),
        (
            "an unparseable second document",
            "kind: ConfigMap\n---\nkind: [unclosed\n".to_owned(),
            vec![],
            vec!["document 2", "not valid YAML"],
        ),
        (
            "a namespace that contradicts --namespace",
            as_yaml_stream(&[
                json!({"kind": "ConfigMap"}),
                template("Job", "j", json!({}), json!({})),
            ]),
            vec!["-n", "team-b"],
            vec!["document 2 (Job j)", "\"team-a\"", "\"team-b\""],
        ),
        (
            "a document that is not a mapping",
            "kind: ConfigMap\n---\n- a list\n".to_owned(),
            vec![],
            vec!["document 2", "expected a mapping, found a list"],
        ),
        (
            "nothing at all",
            "---\n".to_owned(),
            vec![],
            vec!["no object"],
        ),
    ];
    for (what, text, args, wants) in cases {
        let (code, stdout, stderr) = mutate(&text, &args);
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert_eq!(stdout, "", "{what}");
        for w in wants {
            assert!(stderr.contains(w), "{what}: {w:?} not in {stderr}");
        }
    }
}

#[test]
fn a_lone_pod_in_a_stream_prints_as_it_always_did() {
    let training = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pods/training.yaml"),
    )
    .expect("the example pod");
    let (c1, plain, _) = mutate(&training, &[]);
    let (c2, streamed, _) = mutate(&format!("---\n{training}---\n"), &[]);
    assert_eq!((c1, c2), (Some(0), Some(0)));
    assert_eq!(plain, streamed);
}

// --- test DIR -------------------------------------------------------------

fn run_test(dir: &Path, junit: Option<&Path>) -> (Option<i32>, String, String) {
    let mut cmd = bin();
    cmd.arg("test").arg(dir);
    if let Some(j) = junit {
        cmd.arg("--junit").arg(j);
    }
    let out = cmd.output().expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("UTF-8"),
        String::from_utf8(out.stderr).expect("UTF-8"),
    )
}

#[test]
fn the_shipped_ci_example_passes() {
    let (code, stdout, stderr) = run_test(Path::new("examples/ci"), None);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("PASS  team-a's training project (4 expected outcomes)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PASS  pods in a List (2 expected outcomes)"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("2 cases: 2 passed, 0 failed\n"),
        "{stdout}"
    );
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn failing_cases_show_what_differed_and_the_junit_report_says_the_same() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    let config = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(CONFIG))
        .expect("the example config");
    write(d, "persistence.yaml", &config);
    write(d, "manifests.yaml", &as_yaml_stream(&stream(true)));
    write(
        d,
        "good/persistence-test.yaml",
        "config: ../persistence.yaml\ninputs: [../manifests.yaml]\nexpect:\n\
         - {kind: Job, name: train, allowed: {data: [data1], outputs: outputs1, outputsPath: /outputs/1/team-a/train}}\n\
         - {kind: Pod, name: bad, denied: unknown-store}\n",
    );
    write(
        d,
        "wrong/persistence-test.yaml",
        "name: wrong expectations\nconfig: ../persistence.yaml\ninputs: [../manifests.yaml]\nexpect:\n\
         - {kind: Job, name: train, allowed: {data: [data2], outputsPath: /outputs/1/team-a/train-1}}\n\
         - {kind: Pod, name: bad, denied: bad-selection}\n\
         - {kind: Deployment, name: web, denied: unknown-store}\n\
         - {kind: StatefulSet, name: db, allowed: {outputs: null}}\n\
         - {kind: Job, name: missing, allowed: {}}\n\
         - {kind: Pod, name: solo, allowed: {}}\n",
    );
    write(
        d,
        "broken/persistence-test.yaml",
        "config: ../no-such-config.yaml\ninputs: [../manifests.yaml]\nexpect: []\n",
    );
    let junit = d.join("report.xml");
    let (code, stdout, stderr) = run_test(d, Some(&junit));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    for want in [
        "FAIL  broken: the case could not run",
        "no-such-config.yaml",
        "PASS  good (2 expected outcomes)",
        "FAIL  wrong expectations (5 of 6 expected outcomes differ)",
        "Job team-a/train (../manifests.yaml, document 3)",
        "data: expected [\"data2\"], got [\"data1\"]",
        "outputsPath: expected \"/outputs/1/team-a/train-1\", got \"/outputs/1/team-a/train\"",
        "reason: expected bad-selection, got unknown-store",
        "expected denied (unknown-store), got allowed (data: [\"data1\"], outputs: \"outputs1\"",
        "outputs: expected null, got \"outputs1\"",
        "Job missing",
        "not found among the Pods and workloads of the inputs",
        "3 cases: 1 passed, 2 failed",
    ] {
        assert!(stdout.contains(want), "{want:?} not in\n{stdout}");
    }
    assert!(
        !stdout.contains("Pod team-a/solo ("),
        "a passing outcome shows no difference\n{stdout}"
    );

    let xml = std::fs::read_to_string(&junit).expect("the JUnit report is written");
    let doc = roxmltree::Document::parse(&xml).expect("the JUnit report is XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("9"), "{xml}");
    assert_eq!(root.attribute("failures"), Some("5"), "{xml}");
    assert_eq!(root.attribute("errors"), Some("1"), "{xml}");
    let suites: Vec<&str> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert_eq!(suites, ["broken", "good", "wrong expectations"]);
    let failure = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .find(|n| {
            n.attribute("name")
                .is_some_and(|a| a.starts_with("Job team-a/train"))
                && n.attribute("classname") == Some("wrong expectations")
        })
        .and_then(|n| n.children().find(|c| c.has_tag_name("failure")))
        .expect("the failing Job has a <failure>");
    assert!(
        failure
            .attribute("message")
            .is_some_and(|m| m.contains("data: expected")),
        "{xml}"
    );
    assert!(
        failure
            .text()
            .is_some_and(|t| t.contains("outputsPath: expected")),
        "{xml}"
    );
}

#[test]
fn a_directory_without_cases_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (code, stdout, stderr) = run_test(dir.path(), None);
    assert_eq!(code, Some(2));
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("no persistence-test.yaml under"),
        "{stderr}"
    );
}
