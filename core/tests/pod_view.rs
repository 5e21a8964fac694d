//! The pod view against a plain reader (STYLE.md, tests 3): generated pods
//! are written as JSON text with random whitespace, keys in any order and
//! JSON escapes anywhere (`\uXXXX`, surrogate pairs, short escapes, in keys
//! and values), then read by `pod::read` and, embedded in a larger body, by
//! `pod::PodSeed`; what the view reports (names, our annotations, the
//! opt-out label, the controlling Job, our volumes, each container's kept
//! env vars and mounts) must be what a `serde_json::Value` of the same text
//! says. The plain reading here is written from the view's documentation,
//! not from its code.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

use persistence_webhook_core::names::clean_path;
use persistence_webhook_core::pod::{read, Keep, PodSeed, PodView, Reading, Relevant};
use persistence_webhook_core::vocabulary::{
    ANNOTATION_INJECTED, ANNOTATION_OUTPUTS_SUBPATH, ANNOTATION_PERSISTENCE,
    ANNOTATION_UNIQUE_NAME, LABEL_INJECTION, OPT_OUT, RESERVED_ENV,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Map, Value};

#[path = "writer/mod.rs"]
mod writer;

use writer::{style, write};

// ---------------------------------------------------------------------------
// Generated pods, as `Value`s

/// Pieces of the strings a pod is made of: names and paths the filters
/// keep or skip, and characters that JSON must or may escape.
const PIECES: [&str; 22] = [
    "",
    "a",
    "pw-",
    "pw-x",
    "/data/1",
    "data/1/",
    "/data//1",
    "/out",
    "/out/run/1",
    "/",
    "/var/run/secrets/polyaxon.com/gcs",
    "k.json",
    "AWS_REGION",
    "POLYAXON_RUN_OUTPUTS_PATH",
    "\u{e9}",
    "\u{1f600}",
    "\"",
    "\\",
    "\n\t",
    "<&>",
    "\u{2028}\u{7f}\u{0}",
    "name",
];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(&PIECES[..]), 0..4).prop_map(|p| p.concat())
}

/// An env var name: mostly ours, so that most are kept.
fn env_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(&RESERVED_ENV[..4]).prop_map(str::to_owned),
        Just("k.json".to_owned()),
        Just("AWS_REGION".to_owned()),
        text(),
    ]
}

/// A field that is absent (`None`), null, or `v`.
fn field<S: Strategy<Value = Value>>(v: S) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => v.prop_map(Some),
    ]
}

fn string() -> impl Strategy<Value = Value> {
    text().prop_map(Value::String)
}

fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

/// Fields the view never reads, some holding what looks like ours.
fn unknown() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(
            json!({"name": "pw-decoy", "mountPath": "/data/1", "env": [{"name": "AWS_REGION"}]})
        )),
        string().prop_map(Some),
        Just(Some(json!([1, 2.5, true, null, {"k": "v"}]))),
    ]
}

fn mount() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        proptest::sample::select(&PIECES[4..11]).prop_map(str::to_owned),
        text(),
    ];
    (
        text(),
        path,
        field(string()),
        field(any::<bool>().prop_map(Value::Bool)),
        unknown(),
    )
        .prop_map(|(name, path, sub_path, read_only, x)| {
            object(vec![
                ("name", Some(Value::String(name))),
                ("mountPath", Some(Value::String(path))),
                ("subPath", sub_path),
                ("readOnly", read_only),
                ("mountPropagation", x),
            ])
        })
}

fn env() -> impl Strategy<Value = Value> {
    let key_ref = (field(string()), text())
        .prop_map(|(name, key)| object(vec![("name", name), ("key", Some(Value::String(key)))]));
    let value_from = (field(key_ref), unknown())
        .prop_map(|(r, x)| object(vec![("secretKeyRef", r), ("configMapKeyRef", x)]));
    (env_name(), field(string()), field(value_from), unknown()).prop_map(|(name, v, vf, x)| {
        object(vec![
            ("name", Some(Value::String(name))),
            ("value", v),
            ("valueFrom", vf),
            ("x", x),
        ])
    })
}

fn list<S: Strategy<Value = Value>>(item: S, most: usize) -> impl Strategy<Value = Value> {
    proptest::collection::vec(item, 0..most).prop_map(Value::Array)
}

fn container() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just(None), text().prop_map(|t| Some(Value::String(t)))],
        field(list(env(), 6)),
        field(list(mount(), 6)),
        unknown(),
    )
        .prop_map(|(name, env, mounts, x)| {
            object(vec![
                ("name", name),
                ("env", env),
                ("volumeMounts", mounts),
                ("image", x),
            ])
        })
}

fn volume() -> impl Strategy<Value = Value> {
    (text(), unknown()).prop_map(|(name, x)| {
        object(vec![
            ("name", Some(Value::String(name))),
            ("emptyDir", Some(json!({}))),
            ("x", x),
        ])
    })
}

fn owner_ref() -> impl Strategy<Value = Value> {
    let api = prop_oneof![Just("batch/v1".to_owned()), Just("v1".to_owned()), text()];
    let kind = prop_oneof![Just("Job".to_owned()), text()];
    (
        field(api.prop_map(Value::String)),
        field(kind.prop_map(Value::String)),
        field(string()),
        field(any::<bool>().prop_map(Value::Bool)),
    )
        .prop_map(|(api, kind, name, controller)| {
            object(vec![
                ("apiVersion", api),
                ("kind", kind),
                ("name", name),
                ("controller", controller),
                ("uid", Some(json!("u"))),
            ])
        })
}

fn string_map(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        proptest::sample::select(keys).prop_map(str::to_owned),
        text()
    ];
    proptest::collection::btree_map(key, text(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

const OUR_ANNOTATIONS: [&str; 4] = [
    ANNOTATION_PERSISTENCE,
    ANNOTATION_OUTPUTS_SUBPATH,
    ANNOTATION_UNIQUE_NAME,
    ANNOTATION_INJECTED,
];

fn labels() -> impl Strategy<Value = Value> {
    let value = prop_oneof![Just(OPT_OUT.to_owned()), Just("enabled".to_owned()), text()];
    proptest::collection::btree_map(
        prop_oneof![Just(LABEL_INJECTION.to_owned()), text()],
        value,
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

fn metadata() -> impl Strategy<Value = Value> {
    (
        (field(string()), field(string()), field(string())),
        field(string_map(&OUR_ANNOTATIONS)),
        field(labels()),
        field(list(owner_ref(), 3)),
        unknown(),
    )
        .prop_map(|((name, generate, ns), ann, labels, owners, x)| {
            object(vec![
                ("name", name),
                ("generateName", generate),
                ("namespace", ns),
                ("annotations", ann),
                ("labels", labels),
                ("ownerReferences", owners),
                ("managedFields", x),
            ])
        })
}

fn pod() -> impl Strategy<Value = Value> {
    let spec = (
        field(list(volume(), 4)),
        field(list(container(), 4)),
        field(list(container(), 3)),
        unknown(),
    )
        .prop_map(|(volumes, containers, init, x)| {
            object(vec![
                ("volumes", volumes),
                ("containers", containers),
                ("initContainers", init),
                ("nodeSelector", x),
            ])
        });
    (field(metadata()), field(spec), unknown()).prop_map(|(metadata, spec, x)| {
        object(vec![
            ("apiVersion", Some(json!("v1"))),
            ("metadata", metadata),
            ("spec", spec),
            ("status", x),
        ])
    })
}

// ---------------------------------------------------------------------------
// What a pod says, from the view and from a `Value`

#[derive(Debug, PartialEq)]
struct Seen {
    metadata: Option<SeenMeta>,
    spec: Option<SeenSpec>,
}

#[derive(Debug, PartialEq)]
struct SeenMeta {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    /// Ours, in [`OUR_ANNOTATIONS`]' order; `None` without a map.
    annotations: Option<Vec<Option<String>>>,
    opt_out: bool,
    job: Option<String>,
}

#[derive(Debug, PartialEq)]
struct SeenSpec {
    /// Our volumes: name, and the object as written.
    volumes: Option<Vec<(String, Value)>>,
    init_containers: Vec<SeenContainer>,
    containers: Vec<SeenContainer>,
}

#[derive(Debug, PartialEq)]
struct SeenContainer {
    index: usize,
    name: String,
    env: Option<Vec<SeenEnv>>,
    mounts: Option<Vec<SeenMount>>,
}

#[derive(Debug, PartialEq)]
struct SeenEnv {
    name: String,
    value: Option<String>,
    value_from: bool,
    secret: Option<(Option<String>, String)>,
}

#[derive(Debug, PartialEq)]
struct SeenMount {
    name: String,
    mount_path: String,
    sub_path: Option<String>,
    read_only: Option<bool>,
}

fn from_view(pod: &PodView<'_>) -> Seen {
    let metadata = pod.metadata.as_ref().map(|m| SeenMeta {
        name: m.name.as_deref().map(str::to_owned),
        generate_name: m.generate_name.as_deref().map(str::to_owned),
        namespace: m.namespace.as_deref().map(str::to_owned),
        annotations: m.annotations.as_ref().map(|a| {
            [
                &a.persistence,
                &a.outputs_subpath,
                &a.unique_name,
                &a.injected,
            ]
            .iter()
            .map(|v| v.as_deref().map(str::to_owned))
            .collect()
        }),
        opt_out: m.labels.0,
        job: pod.controller_job().map(str::to_owned),
    });
    let spec = pod.spec.as_ref().map(|s| {
        let list = |l: &persistence_webhook_core::pod::Containers<'_>| {
            let got: Vec<SeenContainer> = l
                .iter()
                .map(|c| SeenContainer {
                    index: c.index,
                    name: c.name.to_owned(),
                    env: c.env.map(|e| {
                        e.iter()
                            .map(|e| {
                                let r = e
                                    .value_from
                                    .as_ref()
                                    .and_then(|v| v.secret_key_ref.as_ref());
                                SeenEnv {
                                    name: e.name.to_string(),
                                    value: e.value.as_deref().map(str::to_owned),
                                    value_from: e.value_from.is_some(),
                                    secret: r.map(|r| {
                                        (r.name.as_deref().map(str::to_owned), r.key.to_string())
                                    }),
                                }
                            })
                            .collect()
                    }),
                    mounts: c.volume_mounts.map(|m| {
                        assert_eq!(m.iter().size_hint(), (m.len(), Some(m.len())), "size_hint");
                        m.iter()
                            .map(|m| SeenMount {
                                name: m.name.into_owned(),
                                mount_path: m.mount_path.into_owned(),
                                sub_path: m.sub_path.map(|s| s.into_owned()),
                                read_only: m.read_only,
                            })
                            .collect()
                    }),
                })
                .collect();
            let names: Vec<&str> = l.names().collect();
            let want: Vec<&str> = got.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, want, "names() and iter() agree");
            assert_eq!(l.len(), got.len());
            got
        };
        SeenSpec {
            volumes: s.volumes.as_ref().map(|v| {
                v.iter()
                    .map(|v| {
                        let raw: Value = serde_json::from_str(v.raw.get()).expect("raw volume");
                        (v.name.to_string(), raw)
                    })
                    .collect()
            }),
            init_containers: list(&s.init_containers),
            containers: list(&s.containers),
        }
    });
    Seen { metadata, spec }
}

/// What to keep, as the view's documentation says: everything, or the env
/// vars of the SPEC's names and the config's keys and the mounts of a
/// volume named `pw-...`, at a data path, or beneath an outputs root.
#[derive(Clone, Copy)]
enum Kept<'r> {
    All,
    Ours(&'r Relevant),
}

impl Kept<'_> {
    fn keep(&self) -> Keep<'_> {
        match self {
            Kept::All => Keep::All,
            Kept::Ours(r) => Keep::Ours(r),
        }
    }

    fn env(&self, name: &str) -> bool {
        match self {
            Kept::All => true,
            Kept::Ours(r) => RESERVED_ENV.contains(&name) || r.env_keys.contains(name),
        }
    }

    fn mount(&self, name: &str, path: &str) -> bool {
        let Kept::Ours(r) = self else { return true };
        let path = clean_path(path);
        let beneath = |root: &String| {
            root != "/"
                && path.len() > root.len() + 1
                && path.starts_with(root.as_str())
                && path.as_bytes()[root.len()] == b'/'
        };
        name.starts_with("pw-")
            || r.outputs_roots.contains("/")
            || r.mount_paths.contains(path.as_ref())
            || r.outputs_roots.iter().any(beneath)
    }
}

fn str_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn reference(pod: &Value, kept: Kept<'_>) -> Seen {
    let metadata = pod.get("metadata").filter(|m| !m.is_null()).map(|m| {
        let owners = m["ownerReferences"].as_array().cloned().unwrap_or_default();
        let controllers: Vec<&Value> = owners.iter().filter(|o| o["controller"] == true).collect();
        let job = match controllers.as_slice() {
            [o] if o["apiVersion"] == "batch/v1" && o["kind"] == "Job" => {
                str_of(&o["name"]).filter(|n| !n.is_empty())
            }
            _ => None,
        };
        SeenMeta {
            name: str_of(&m["name"]),
            generate_name: str_of(&m["generateName"]),
            namespace: str_of(&m["namespace"]),
            annotations: m["annotations"].as_object().map(|a| {
                OUR_ANNOTATIONS
                    .iter()
                    .map(|k| a.get(*k).and_then(str_of))
                    .collect()
            }),
            opt_out: m["labels"][LABEL_INJECTION] == OPT_OUT,
            job,
        }
    });
    let spec = pod.get("spec").filter(|s| !s.is_null()).map(|s| {
        let list = |key: &str| -> Vec<SeenContainer> {
            let containers = s[key].as_array().cloned().unwrap_or_default();
            containers
                .iter()
                .enumerate()
                .map(|(index, c)| SeenContainer {
                    index,
                    name: str_of(&c["name"]).unwrap_or_default(),
                    env: c["env"].as_array().map(|env| {
                        let mut out: Vec<SeenEnv> = Vec::new();
                        for e in env {
                            let name = str_of(&e["name"]).expect("env name");
                            let r = &e["valueFrom"]["secretKeyRef"];
                            let seen = SeenEnv {
                                value: str_of(&e["value"]),
                                value_from: !e["valueFrom"].is_null(),
                                secret: r
                                    .is_object()
                                    .then(|| (str_of(&r["name"]), str_of(&r["key"]).expect("key"))),
                                name,
                            };
                            // At most two of a name, the first of each value.
                            let same: Vec<&SeenEnv> =
                                out.iter().filter(|k| k.name == seen.name).collect();
                            let new = !same.iter().any(|k| {
                                k.value == seen.value
                                    && k.value_from == seen.value_from
                                    && k.secret == seen.secret
                            });
                            if kept.env(&seen.name) && new && same.len() < 2 {
                                out.push(seen);
                            }
                        }
                        out
                    }),
                    mounts: c["volumeMounts"].as_array().map(|mounts| {
                        mounts
                            .iter()
                            .map(|m| SeenMount {
                                name: str_of(&m["name"]).expect("name"),
                                mount_path: str_of(&m["mountPath"]).expect("mountPath"),
                                sub_path: str_of(&m["subPath"]),
                                read_only: m["readOnly"].as_bool(),
                            })
                            .filter(|m| kept.mount(&m.name, &m.mount_path))
                            .collect()
                    }),
                })
                .collect()
        };
        SeenSpec {
            volumes: s["volumes"].as_array().map(|v| {
                v.iter()
                    .filter_map(|v| {
                        let name = str_of(&v["name"]).expect("volume name");
                        name.starts_with("pw-").then(|| (name, v.clone()))
                    })
                    .collect()
            }),
            init_containers: list("initContainers"),
            containers: list("containers"),
        }
    });
    Seen { metadata, spec }
}

// ---------------------------------------------------------------------------
// Reading a pod embedded in a larger body, as the review's codec does

/// `{"...": ..., "object": <pod>, ...}`: the pod read by `PodSeed`, at an
/// offset of the text, which is the whole body.
struct Embedded<'k, 'de>(Reading<'k, 'de>);

impl<'de> Visitor<'de> for Embedded<'_, 'de> {
    type Value = Option<PodView<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a body")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut pod = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "object" {
                pod = map.next_value_seed(PodSeed(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(pod)
    }
}

fn read_embedded<'a>(body: &'a str, keep: Keep<'_>) -> Result<PodView<'a>, serde_json::Error> {
    use serde::de::Deserializer as _;
    let mut de = serde_json::Deserializer::from_str(body);
    let pod = (&mut de).deserialize_map(Embedded(Reading { keep, text: body }))?;
    de.end()?;
    Ok(pod.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Running

fn relevant() -> Relevant {
    Relevant {
        env_keys: HashSet::from(["k.json".to_owned()]),
        mount_paths: HashSet::from([
            "/data/1".to_owned(),
            "/var/run/secrets/polyaxon.com/gcs".to_owned(),
        ]),
        outputs_roots: HashSet::from(["/out".to_owned()]),
    }
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    // Cases default to 256 (PROPTEST_CASES overrides); no regression files
    // are written into the repository.
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    match TestRunner::new(config).run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("property failed: {why}\nminimal failing input: {input:#?}")
        }
        Err(TestError::Abort(why)) => panic!("property aborted: {why}"),
    }
}

/// How often each kind of string was read, so that a generator that
/// stopped writing escapes fails instead of passing vacuously.
#[derive(Default)]
struct Coverage(RefCell<BTreeMap<&'static str, usize>>);

impl Coverage {
    fn hit(&self, what: &'static str, yes: bool) {
        if yes {
            *self.0.borrow_mut().entry(what).or_default() += 1;
        }
    }
}

#[test]
fn the_view_says_what_the_pod_says() {
    let relevant = relevant();
    let coverage = Coverage::default();
    run((pod(), style(), style()), |(pod, style, outer)| {
        let text = write(&pod, style);
        coverage.hit("escaped key", style.escape_keys && style.escape == 1000);
        coverage.hit(
            "escaped value after a plain key",
            !style.escape_keys && style.escape >= 500,
        );
        coverage.hit(
            "surrogate pair",
            text.contains("\\ud83d") || text.contains("\\uD83D"),
        );
        coverage.hit("some escaped", style.escape == 100);
        for kept in [Kept::All, Kept::Ours(&relevant)] {
            let want = reference(&pod, kept);
            let view = read(&text, kept.keep())
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(from_view(&view), want, "read: {}", text);
            // The same pod at an offset of a larger body.
            let body = write(
                &json!({"apiVersion": "admission.k8s.io/v1", "uid": "\u{e9}\n", "zz": [1, {"a": "b"}]}),
                outer,
            );
            let at = body.rfind('}').expect("an object");
            let body = format!("{}, \"object\" : {text} }}", &body[..at]);
            let embedded = read_embedded(&body, kept.keep())
                .map_err(|e| TestCaseError::fail(format!("{e}\n{body}")))?;
            let want = reference(&pod, kept);
            prop_assert_eq!(from_view(&embedded), want, "embedded: {}", body);
        }
        Ok(())
    });
    let seen = coverage.0.borrow();
    for what in [
        "escaped key",
        "escaped value after a plain key",
        "surrogate pair",
        "some escaped",
    ] {
        assert!(
            seen.get(what).copied().unwrap_or(0) > 10,
            "{what}: {seen:?}"
        );
    }
}

#[test]
fn a_field_twice_is_refused_however_its_key_is_spelled() {
    // A plain reader keeps the last of two equal keys; the view refuses
    // the pod (serde's "duplicate field"), whether or not either key has
    // escapes, so it never reads a value the API server would not.
    let mount = |m: &str| format!(r#"{{"spec":{{"containers":[{{"volumeMounts":[{m}]}}]}}}}"#);
    let env = |e: &str| format!(r#"{{"spec":{{"containers":[{{"env":[{e}]}}]}}}}"#);
    let cases = [
        mount(r#"{"name":"pw-a","mountPath":"/a","n\u0061me":"pw-b"}"#),
        mount(r#"{"name":"pw-a","mount\u0050ath":"/a","mountPath":"/b"}"#),
        mount(r#"{"name":"pw-a","mountPath":"/a","subPath":"x","sub\u0050ath":null}"#),
        mount(r#"{"name":"pw-a","mountPath":"/a","readOnly":true,"read\u004fnly":false}"#),
        env(r#"{"name":"AWS_REGION","n\u0061me":"A"}"#),
        env(r#"{"name":"AWS_REGION","value":"a","v\u0061lue":"b"}"#),
        r#"{"spec":{"containers":[{"name":"a","n\u0061me":"b"}]}}"#.to_owned(),
        r#"{"spec":{"containers":[{"env":[],"\u0065nv":null}]}}"#.to_owned(),
        r#"{"spec":{"containers":[{"volumeMounts":[],"volume\u004dounts":null}]}}"#.to_owned(),
        r#"{"spec":{"containers":[],"c\u006fntainers":[]}}"#.to_owned(),
        r#"{"spec":{"volumes":[],"v\u006flumes":null}}"#.to_owned(),
        r#"{"spec":{},"sp\u0065c":{}}"#.to_owned(),
        r#"{"metadata":{"name":"a","n\u0061me":"b"}}"#.to_owned(),
        format!(
            r#"{{"metadata":{{"annotations":{{"{ANNOTATION_PERSISTENCE}":"a","polyaxon.com\/persistence":"b"}}}}}}"#
        ),
    ];
    let relevant = relevant();
    for json in &cases {
        let plain: Value = serde_json::from_str(json).expect(json);
        assert!(plain.is_object(), "a plain reader takes it: {json}");
        for keep in [Keep::All, Keep::Ours(&relevant)] {
            let err = read(json, keep).expect_err(json).to_string();
            assert!(err.contains("duplicate"), "{json}: {err}");
        }
    }
}

#[test]
fn conflicts_are_denied_however_the_pod_is_written() {
    // A mount the webhook must refuse, with escapes in its keys and
    // values (the arena, or spans decoded when read): the same denial,
    // the same response, as when written plainly.
    use persistence_webhook_core::review::{review, Decision};
    use persistence_webhook_core::Config;
    let config = Config::from_yaml(
        "data: {data1: {mountPath: /data/1, hostPath: /d1, readOnly: true}}\n\
         outputs: {outputs1: {mountPath: /outputs/1, existingClaim: o}}",
    )
    .expect("config");
    let mounts = [
        json!({"name": "own", "mountPath": "/data/1/"}),
        json!({"name": "own", "mountPath": "/outputs/1/ns/p"}),
        json!({"name": "pw-data1", "mountPath": "/elsewhere", "readOnly": true}),
        json!({"name": "pw-data1", "mountPath": "/data/1"}),
        json!({"name": "pw-data1", "mountPath": "/data/1", "readOnly": true, "subPath": "x"}),
        json!({"name": "pw-outputs1", "mountPath": "/outputs/1/ns/p", "subPath": "ns/other"}),
    ];
    for mount in mounts {
        for container in [
            json!({"name": "m", "volumeMounts": [mount.clone()]}),
            json!({}),
        ] {
            let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE", "namespace": "ns", "object": {"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "m", "volumeMounts": [mount.clone()]}],
                    "initContainers": [container]}}}});
            let plain = review(&config, body.to_string().as_bytes()).expect("reviewed");
            assert!(
                matches!(plain.decision, Decision::Denied(_)),
                "{mount}: {plain:?}"
            );
            for seed in 1..20 {
                let style = writer::Style {
                    seed: seed * 2 + 1,
                    escape: 1000,
                    space: 300,
                    escape_keys: seed % 2 == 0,
                };
                let text = write(&body, style);
                let written = review(&config, text.as_bytes()).expect("reviewed");
                assert_eq!(written.decision, plain.decision, "{text}");
                assert_eq!(written.response, plain.response, "{text}");
            }
        }
    }
}
