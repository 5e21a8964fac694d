//! `review()` on well-formed AdmissionReviews (v1, kind Pod, CREATE) around
//! generated pods and selections, checking SPEC §4 and §5 on every patched
//! answer:
//!
//! - the response is allowed, `patchType: JSONPatch`, and its base64 `patch`
//!   decodes to the decided patch, made only of `add` operations;
//! - the patch applies (`json_patch::patch`) to the pod as sent;
//! - the patched pod still deserialises as a `k8s::Pod` (when the pod as sent
//!   did);
//! - admitting the patched pod again gives `Decision::Unchanged`;
//! - the patch adds no duplicate volume name and no duplicate mount path in
//!   any container (duplicates the pod already had are not ours);
//! - for a pod whose selection the generator built (or left out) and that
//!   carries nothing named like ours yet, the patched pod is what the one
//!   SPEC model gives (`spec::expect`, `spec::check_patched_pod`): record,
//!   volumes, env, mounts, targeted containers, nothing else moved. The
//!   run's sub-path is read back from the record (its rules are pinned by
//!   the golden and property tests).
//!
//! Every other answer must simply not panic. The config is one of a few fixed
//! valid ones or is generated (falling back to a fixed one when the generated
//! one is refused). The selection annotations mix valid selections built from
//! the config's own store names and the pod's container names with arbitrary
//! strings, so both the happy path and every denial are reached.

#![no_main]

#[path = "../../core/tests/model/describe.rs"]
mod describe;
#[path = "../../core/tests/model/spec.rs"]
mod spec;
use describe::describe;

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use persistence_webhook_core::config::Role;
use persistence_webhook_core::k8s::Pod;
use persistence_webhook_core::review::{review, Decision};
use persistence_webhook_core::Config;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Configs

const FIXED_YAML: [&str; 5] = [
    include_str!("../../tests/fixtures/config.yaml"),
    include_str!("../../examples/persistence.yaml"),
    include_str!("../../tests/fixtures/default-outputs-alphabetical/config.yaml"),
    // Buckets only, a reused secret key, namespaces everywhere.
    r#"
data:
  d-gcs: {store: gcs, bucket: "gs://b/", secret: s, secretKey: key.json}
  d-s3: {store: s3, bucket: "s3://b/x/y", secret: s, secretKey: key.json, namespaces: [team-a]}
  d-az: {store: azure, bucket: "wasbs://c@a.blob.core.windows.net", secret: az, secretKey: az.json}
outputs:
  o-gcs: {store: gcs, bucket: "gs://o", secret: s2, secretKey: other.json, namespaces: [default]}
  o-s3: {store: s3, bucket: "s3://o/runs/", secret: s, secretKey: key.json}
"#,
    // Nested and trailing-slash mount paths: an outputs store under a data
    // store, a data store where outputs sub-paths land.
    r#"
data:
  a: {mountPath: /mnt/}
  b: {mountPath: /mnt/out/default/p, existingClaim: b, readOnly: true}
  c: {mountPath: /c, hostPath: /h}
outputs:
  out: {mountPath: /mnt/out/, existingClaim: out}
  out2: {mountPath: /c/o}
defaultOutputs: out
"#,
];

static FIXED: LazyLock<Vec<Config>> = LazyLock::new(|| {
    FIXED_YAML
        .iter()
        .map(|y| Config::from_yaml(y).expect("a fixed fuzz config is valid"))
        .collect()
});

const STORE_NAMES: [&str; 10] = [
    "data1", "data2", "d", "o", "outputs1", "outputs2", "gcs", "s3", "az", "team",
];
const CONFIG_PATHS: [&str; 10] = [
    "/data",
    "/data/1",
    "/data/1/",
    "/outputs",
    "/outputs/1",
    "/outputs/1/default",
    "/o",
    "/var/run/secrets/polyaxon.com",
    "/scratch",
    "/data/2",
];
const BUCKETS: [[&str; 3]; 3] = [
    ["gs://b", "gs://b/", "gs://b/x/y"],
    ["s3://b", "s3://b/runs/", "s3://o"],
    [
        "wasbs://c@a.blob.core.windows.net/",
        "wasbs://c@a.blob.core.windows.net",
        "wasbs://c@a.blob.core.windows.net/p/",
    ],
];
const SECRETS: [&str; 3] = ["s1", "s2", "gcs-secret"];
const SECRET_KEYS: [&str; 4] = ["k.json", "key.json", "FOO", "gcs-key.json"];
const NAMESPACES: [&str; 4] = ["default", "team-a", "team-b", "kube-system"];

#[derive(Arbitrary, Debug)]
enum ConfigPick {
    Fixed(u8),
    Generated(GenConfig),
}

#[derive(Arbitrary, Debug)]
struct GenConfig {
    stores: Vec<GenStore>,
    default_outputs: Option<u8>,
    top_level_key: bool,
}

#[derive(Arbitrary, Debug)]
struct GenStore {
    name: u8,
    outputs: bool,
    kind: u8,
    path: u8,
    read_only: Option<bool>,
    namespaces: Option<Vec<u8>>,
    secret: u8,
    key: u8,
}

fn pick<'a>(pool: &[&'a str], i: u8) -> &'a str {
    pool[usize::from(i) % pool.len()]
}

impl GenConfig {
    /// JSON text (JSON is YAML).
    fn render(&self) -> String {
        let mut data = Map::new();
        let mut outputs = Map::new();
        for s in self.stores.iter().take(8) {
            let mut m = Map::new();
            match s.kind % 6 {
                k @ 0..=2 => {
                    m.insert("mountPath".into(), json!(pick(&CONFIG_PATHS, s.path)));
                    match k {
                        0 => m.insert("hostPath".into(), json!("/h")),
                        1 => m.insert("existingClaim".into(), json!("claim")),
                        _ => None,
                    };
                    if let Some(ro) = s.read_only {
                        m.insert("readOnly".into(), json!(ro));
                    }
                }
                k => {
                    let provider = ["gcs", "s3", "azure"][usize::from(k - 3)];
                    let bucket = pick(&BUCKETS[usize::from(k - 3)], s.path);
                    m.insert("store".into(), json!(provider));
                    m.insert("bucket".into(), json!(bucket));
                    m.insert("secret".into(), json!(pick(&SECRETS, s.secret)));
                    m.insert("secretKey".into(), json!(pick(&SECRET_KEYS, s.key)));
                }
            }
            if let Some(ns) = &s.namespaces {
                let ns: Vec<&str> = ns.iter().take(3).map(|&i| pick(&NAMESPACES, i)).collect();
                m.insert("namespaces".into(), json!(ns));
            }
            let section = if s.outputs { &mut outputs } else { &mut data };
            section.insert(pick(&STORE_NAMES, s.name).to_owned(), Value::Object(m));
        }
        let mut top = json!({"data": data, "outputs": outputs});
        if let Some(i) = self.default_outputs {
            top["defaultOutputs"] = json!(pick(&STORE_NAMES, i));
        }
        if self.top_level_key {
            top = json!({ "persistence": top });
        }
        top.to_string()
    }
}

// ---------------------------------------------------------------------------
// Pods

/// A string from a pool that suits the field, or an arbitrary one.
#[derive(Arbitrary, Debug)]
enum Text {
    Pool(u8),
    Raw(String),
}

impl Text {
    fn get(&self, pool: &[String]) -> String {
        match self {
            Text::Pool(i) if !pool.is_empty() => pool[usize::from(*i) % pool.len()].clone(),
            Text::Pool(_) => String::new(),
            Text::Raw(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: ConfigPick,
    uid: Text,
    /// The namespace, in `request.namespace`, or else only in the pod's
    /// `metadata.namespace` (an empty one is a missing one).
    namespace: Text,
    namespace_in_request: bool,
    /// `request.name`.
    name: Option<Text>,
    dry_run: Option<bool>,
    v1beta1: bool,
    pod: GenPod,
}

#[derive(Arbitrary, Debug)]
struct GenPod {
    metadata: Option<GenMeta>,
    spec: Option<GenSpec>,
    /// Which absent lists and maps are sent as `null` instead (see [`Null`]).
    nulls: u8,
}

/// Bits of [`GenPod::nulls`].
struct Null;

impl Null {
    const ANNOTATIONS: u8 = 1;
    const LABELS: u8 = 2;
    const VOLUMES: u8 = 4;
    const ENV: u8 = 8;
    const MOUNTS: u8 = 16;
    const INIT_CONTAINERS: u8 = 32;
}

#[derive(Arbitrary, Debug)]
struct GenMeta {
    name: Option<Text>,
    generate_name: Option<Text>,
    namespace: Option<Text>,
    labels: Option<Vec<(Text, Text)>>,
    annotations: Option<GenAnnotations>,
}

#[derive(Arbitrary, Debug)]
struct GenAnnotations {
    persistence: Option<SelectionText>,
    outputs_subpath: Option<SubPath>,
    unique_name: Option<UniqueName>,
    injected: Option<Injected>,
    others: Vec<(String, String)>,
}

#[derive(Arbitrary, Debug)]
enum SelectionText {
    Built {
        data: Option<Vec<Text>>,
        outputs: Option<Outputs>,
        containers: Option<Vec<Text>>,
        style: u8,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Outputs {
    One(Text),
    List(Vec<Text>),
}

#[derive(Arbitrary, Debug)]
enum SubPath {
    Segments(Vec<Text>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum UniqueName {
    Experiment(Text, Text, u32),
    Group(Text, Text, u32, u32),
    Kind(Text, Text, u8, u32),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Injected {
    /// What an earlier admission would have written for this store and sub-path.
    Store {
        store: Text,
        sub_path: SubPath,
    },
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct GenSpec {
    volumes: Option<Vec<GenVolume>>,
    containers: Option<Vec<GenContainer>>,
    init_containers: Option<Vec<GenContainer>>,
}

#[derive(Arbitrary, Debug)]
struct GenVolume {
    name: Text,
    kind: u8,
}

#[derive(Arbitrary, Debug)]
struct GenContainer {
    name: Text,
    env: Option<Vec<GenEnv>>,
    mounts: Option<Vec<GenMount>>,
}

#[derive(Arbitrary, Debug)]
struct GenEnv {
    name: Text,
    value: EnvValue,
}

#[derive(Arbitrary, Debug)]
enum EnvValue {
    None,
    Plain(Text),
    Secret { name: Option<Text>, key: Text },
    Field,
}

#[derive(Arbitrary, Debug)]
struct GenMount {
    volume: Text,
    path: Text,
    sub_path: Option<Text>,
    read_only: Option<bool>,
}

/// The pools each field draws from, partly taken from the config so that
/// generated pods meet its stores.
struct Pools {
    stores: Vec<String>,
    namespaces: Vec<String>,
    names: Vec<String>,
    uids: Vec<String>,
    containers: Vec<String>,
    segments: Vec<String>,
    users: Vec<String>,
    env_names: Vec<String>,
    values: Vec<String>,
    volumes: Vec<String>,
    mount_paths: Vec<String>,
    label_keys: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl Pools {
    fn new(config: &Config) -> Pools {
        let all = || {
            config
                .stores(Role::Data)
                .values()
                .chain(config.stores(Role::Outputs).values())
        };
        let stores: Vec<String> = all().map(|s| s.name().to_owned()).collect();
        let mut volumes = strings(&["v", "data", "pw--gcs-credentials", "pw-", "kube-api-access"]);
        volumes.extend(all().map(|s| s.volume_name().to_owned()));
        let mut mount_paths = strings(&[
            "/",
            "/v",
            "/var/run/secrets/polyaxon.com/gcs",
            "/var/run/secrets/polyaxon.com/gcs/",
            "/outputs/1/default/p",
            "/outputs/1/team-a/p",
        ]);
        for s in all() {
            let p = s.path().trim_end_matches('/');
            mount_paths.push(p.to_owned());
            mount_paths.push(format!("{p}/"));
            mount_paths.push(format!("{p}//"));
            mount_paths.push(format!("{p}/default/p"));
        }
        let mut env_names = strings(&[
            "POLYAXON_RUN_DATA_PATHS",
            "POLYAXON_RUN_OUTPUTS_PATH",
            "POLYSTORES_RUN_STORES_ACCESS_KEYS",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "PATH",
        ]);
        env_names.extend(SECRET_KEYS.iter().map(|k| (*k).to_owned()));
        env_names.extend(strings(&["s3-key.json", "az-key.json", "gcs-raw-key.json"]));
        let mut values = strings(&["{}", "", "x", "/outputs/1/default/p"]);
        values.extend(all().map(|s| s.path().to_owned()));
        Pools {
            stores,
            namespaces: strings(&NAMESPACES),
            names: strings(&["p", "job-1", "a.b", "gen-", ""]),
            uids: strings(&["u1", "0df28fbd-5f5f-4c5e-a2c4-42d1b4d5b6a1", "a/b", ".."]),
            containers: strings(&["main", "sidecar", "fetch", "init", ""]),
            segments: strings(&["a", "runs", "x.y", "..", ".", "", "default", "p"]),
            users: strings(&["acme", "vision", "u", "a-b", ""]),
            env_names,
            values,
            volumes,
            mount_paths,
            label_keys: strings(&["polyaxon.com/persistence-injection", "app"]),
        }
    }
}

fn sub_path(s: &SubPath, pools: &Pools) -> String {
    match s {
        SubPath::Segments(segs) => segs
            .iter()
            .take(6)
            .map(|t| t.get(&pools.segments))
            .collect::<Vec<_>>()
            .join("/"),
        SubPath::Raw(r) => r.clone(),
    }
}

/// A YAML flow sequence of names: plain when safe, else JSON-quoted (JSON
/// strings are YAML double-quoted scalars).
fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| yaml_scalar(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        s.to_owned()
    } else {
        Value::String(s.to_owned()).to_string()
    }
}

/// What a built selection names: data stores, outputs (one or a list) and
/// containers, each when its key is written.
type Parts = (Option<Vec<String>>, Option<Value>, Option<Vec<String>>);

fn selection_parts(
    s: &SelectionText,
    pools: &Pools,
    container_names: &[String],
) -> Option<(Parts, u8)> {
    let SelectionText::Built {
        data,
        outputs,
        containers,
        style,
    } = s
    else {
        return None;
    };
    let data: Option<Vec<String>> = data
        .as_ref()
        .map(|d| d.iter().take(8).map(|t| t.get(&pools.stores)).collect());
    let outputs: Option<Value> = outputs.as_ref().map(|o| match o {
        Outputs::One(t) => json!(t.get(&pools.stores)),
        Outputs::List(l) => json!(l
            .iter()
            .take(3)
            .map(|t| t.get(&pools.stores))
            .collect::<Vec<_>>()),
    });
    let containers: Option<Vec<String>> = containers
        .as_ref()
        .map(|c| c.iter().take(4).map(|t| t.get(container_names)).collect());
    Some(((data, outputs, containers), *style))
}

fn selection_text(s: &SelectionText, pools: &Pools, container_names: &[String]) -> String {
    let Some(((data, outputs, containers), style)) = selection_parts(s, pools, container_names)
    else {
        let SelectionText::Raw(r) = s else {
            unreachable!("a selection is built or raw")
        };
        return r.clone();
    };
    match style % 3 {
        0 => {
            let mut m = Map::new();
            if let Some(d) = data {
                m.insert("data".into(), json!(d));
            }
            if let Some(o) = outputs {
                m.insert("outputs".into(), o);
            }
            if let Some(c) = containers {
                m.insert("containers".into(), json!(c));
            }
            Value::Object(m).to_string()
        }
        flow => {
            let mut lines = Vec::new();
            let list = |items: &[String]| {
                if flow == 1 || items.is_empty() {
                    format!(" {}", yaml_list(items))
                } else {
                    items
                        .iter()
                        .map(|i| format!("\n- {}", yaml_scalar(i)))
                        .collect()
                }
            };
            if let Some(d) = &data {
                lines.push(format!("data:{}", list(d)));
            }
            match &outputs {
                Some(Value::String(o)) => lines.push(format!("outputs: {}", yaml_scalar(o))),
                Some(Value::Array(a)) => {
                    let a: Vec<String> = a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect();
                    lines.push(format!("outputs:{}", list(&a)));
                }
                _ => {}
            }
            if let Some(c) = &containers {
                lines.push(format!("containers:{}", list(c)));
            }
            lines.join("\n")
        }
    }
}

fn unique_name(u: &UniqueName, pools: &Pools) -> String {
    const KINDS: [&str; 5] = ["jobs", "builds", "notebooks", "tensorboards", "other"];
    match u {
        UniqueName::Experiment(a, b, id) => {
            format!("{}.{}.{id}", a.get(&pools.users), b.get(&pools.users))
        }
        UniqueName::Group(a, b, g, id) => {
            format!("{}.{}.{g}.{id}", a.get(&pools.users), b.get(&pools.users))
        }
        UniqueName::Kind(a, b, k, id) => format!(
            "{}.{}.{}.{id}",
            a.get(&pools.users),
            b.get(&pools.users),
            pick(&KINDS, *k)
        ),
        UniqueName::Raw(r) => r.clone(),
    }
}

fn injected(i: &Injected, pools: &Pools, config: &Config) -> String {
    match i {
        Injected::Store { store, sub_path: s } => {
            let name = store.get(&pools.stores);
            let path = config
                .store(&name)
                .map(|st| format!("{}/{}", st.path().trim_end_matches('/'), sub_path(s, pools)));
            json!({"data": [], "outputs": name, "outputsPath": path}).to_string()
        }
        Injected::Raw(r) => r.clone(),
    }
}

fn volume(v: &GenVolume, pools: &Pools) -> Value {
    let name = v.name.get(&pools.volumes);
    match v.kind % 4 {
        0 => json!({"name": name, "emptyDir": {}}),
        1 => json!({"name": name, "hostPath": {"path": "/h"}}),
        2 => json!({"name": name, "persistentVolumeClaim": {"claimName": "claim"}}),
        _ => json!({"name": name, "configMap": {"name": "cm"}}),
    }
}

fn container(c: &GenContainer, pools: &Pools, nulls: u8) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(c.name.get(&pools.containers)));
    m.insert("image".into(), json!("busybox"));
    m.insert("x-unknown-field".into(), json!({"kept": [1, 2]}));
    if let Some(env) = &c.env {
        let env: Vec<Value> = env
            .iter()
            .take(8)
            .map(|e| {
                let mut v = json!({"name": e.name.get(&pools.env_names)});
                match &e.value {
                    EnvValue::None => {}
                    EnvValue::Plain(t) => v["value"] = json!(t.get(&pools.values)),
                    EnvValue::Secret { name, key } => {
                        let mut r = json!({"key": key.get(&pools.env_names)});
                        if let Some(n) = name {
                            r["name"] = json!(n.get(&strings(&SECRETS)));
                        }
                        v["valueFrom"] = json!({ "secretKeyRef": r });
                    }
                    EnvValue::Field => {
                        v["valueFrom"] = json!({"fieldRef": {"fieldPath": "metadata.name"}})
                    }
                }
                v
            })
            .collect();
        m.insert("env".into(), Value::Array(env));
    } else if nulls & Null::ENV != 0 {
        m.insert("env".into(), Value::Null);
    }
    if let Some(mounts) = &c.mounts {
        let mounts: Vec<Value> = mounts
            .iter()
            .take(8)
            .map(|mt| {
                let mut v = json!({
                    "name": mt.volume.get(&pools.volumes),
                    "mountPath": mt.path.get(&pools.mount_paths),
                });
                if let Some(s) = &mt.sub_path {
                    v["subPath"] = json!(s.get(&pools.segments));
                }
                if let Some(ro) = mt.read_only {
                    v["readOnly"] = json!(ro);
                }
                v
            })
            .collect();
        m.insert("volumeMounts".into(), Value::Array(mounts));
    } else if nulls & Null::MOUNTS != 0 {
        m.insert("volumeMounts".into(), Value::Null);
    }
    Value::Object(m)
}

fn pod(p: &GenPod, pools: &Pools, config: &Config) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "status": {}});
    let mut container_names = Vec::new();
    if let Some(spec) = &p.spec {
        let mut s = json!({"restartPolicy": "Never", "x-unknown": true});
        match &spec.volumes {
            Some(v) => s["volumes"] = v.iter().take(8).map(|v| volume(v, pools)).collect(),
            None if p.nulls & Null::VOLUMES != 0 => s["volumes"] = Value::Null,
            None => {}
        }
        for (key, list) in [
            ("initContainers", &spec.init_containers),
            ("containers", &spec.containers),
        ] {
            if let Some(list) = list {
                let list: Vec<Value> = list
                    .iter()
                    .take(4)
                    .map(|c| container(c, pools, p.nulls))
                    .collect();
                container_names.extend(
                    list.iter()
                        .filter_map(|c| c["name"].as_str().map(str::to_owned)),
                );
                s[key] = Value::Array(list);
            } else if key == "initContainers" && p.nulls & Null::INIT_CONTAINERS != 0 {
                s[key] = Value::Null;
            }
        }
        pod["spec"] = s;
    }
    container_names.push("missing".to_owned());
    if let Some(meta) = &p.metadata {
        let mut m = Map::new();
        if let Some(n) = &meta.name {
            m.insert("name".into(), json!(n.get(&pools.names)));
        }
        if let Some(g) = &meta.generate_name {
            m.insert("generateName".into(), json!(g.get(&pools.names)));
        }
        if let Some(ns) = &meta.namespace {
            m.insert("namespace".into(), json!(ns.get(&pools.namespaces)));
        }
        if let Some(labels) = &meta.labels {
            let values = strings(&["disabled", "enabled", ""]);
            let l: Map<String, Value> = labels
                .iter()
                .take(4)
                .map(|(k, v)| (k.get(&pools.label_keys), json!(v.get(&values))))
                .collect();
            m.insert("labels".into(), Value::Object(l));
        } else if p.nulls & Null::LABELS != 0 {
            m.insert("labels".into(), Value::Null);
        }
        if let Some(a) = &meta.annotations {
            let mut out = Map::new();
            for (k, v) in a.others.iter().take(3) {
                out.insert(k.clone(), json!(v));
            }
            if let Some(s) = &a.persistence {
                out.insert(
                    "polyaxon.com/persistence".into(),
                    json!(selection_text(s, pools, &container_names)),
                );
            }
            if let Some(s) = &a.outputs_subpath {
                out.insert(
                    "polyaxon.com/outputs-subpath".into(),
                    json!(sub_path(s, pools)),
                );
            }
            if let Some(u) = &a.unique_name {
                out.insert(
                    "polyaxon.com/unique-name".into(),
                    json!(unique_name(u, pools)),
                );
            }
            if let Some(i) = &a.injected {
                out.insert(
                    "polyaxon.com/persistence-injected".into(),
                    json!(injected(i, pools, config)),
                );
            }
            m.insert("annotations".into(), Value::Object(out));
        } else if p.nulls & Null::ANNOTATIONS != 0 {
            m.insert("annotations".into(), Value::Null);
        }
        pod["metadata"] = Value::Object(m);
    }
    pod
}

struct Request {
    api_version: &'static str,
    uid: String,
    namespace: Option<String>,
    name: Option<String>,
    dry_run: Option<bool>,
}

impl Request {
    fn body(&self, pod: &Value) -> Vec<u8> {
        let mut request = json!({
            "uid": self.uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "object": pod,
            "oldObject": null,
        });
        if let Some(ns) = &self.namespace {
            request["namespace"] = json!(ns);
        }
        if let Some(n) = &self.name {
            request["name"] = json!(n);
        }
        if let Some(d) = self.dry_run {
            request["dryRun"] = json!(d);
        }
        json!({"apiVersion": self.api_version, "kind": "AdmissionReview", "request": request})
            .to_string()
            .into_bytes()
    }
}

// ---------------------------------------------------------------------------
// Checks

/// Every SPEC invariant of a patched answer, from the one oracle in
/// core/tests/model/spec.rs; panics with what failed.
fn check_patched(
    config: &Config,
    req: &Request,
    pod: &Value,
    decided: &json_patch::Patch,
    out: &Value,
    selection: Option<&dyn Fn(&Value) -> spec::Selection>,
) {
    let fail = |e: String| -> ! { panic!("{e}\npod: {pod}\nanswer: {out}") };
    spec::check_envelope(&json!(req.api_version), &json!(req.uid), out).unwrap_or_else(|e| fail(e));
    let wire = spec::wire_patch(out).unwrap_or_else(|e| fail(e));
    assert_eq!(
        wire,
        serde_json::to_value(decided).expect("a patch serialises"),
        "the wire patch is the decided one"
    );
    let patched = spec::apply(pod, &wire).unwrap_or_else(|e| fail(e));
    if serde_json::from_value::<Pod>(pod.clone()).is_ok() {
        if let Err(e) = serde_json::from_value::<Pod>(patched.clone()) {
            panic!("the patched pod is no longer a Pod: {e}\npatched: {patched}");
        }
    }
    spec::check_no_new_duplicates(pod, &patched).unwrap_or_else(|e| fail(e));
    if let Some(selection) = selection {
        let want = spec::expect(&selection(&patched));
        spec::check_patched_pod(pod, &patched, &want).unwrap_or_else(|e| fail(e));
    }
    let again = review(config, &req.body(&patched)).expect("the patched review is answered");
    assert!(
        matches!(again.decision, Decision::Unchanged(_)),
        "admitting the patched pod again must change nothing, got {:?}\npod: {pod}\npatched: {patched}",
        again.decision
    );
}

fuzz_target!(|input: Input| {
    let generated;
    let config: &Config = match &input.config {
        ConfigPick::Fixed(i) => &FIXED[usize::from(*i) % FIXED.len()],
        ConfigPick::Generated(g) => match Config::from_yaml(&g.render()) {
            Ok(c) => {
                generated = c;
                &generated
            }
            Err(_) => &FIXED[0],
        },
    };
    let pools = Pools::new(config);
    let mut pod = pod(&input.pod, &pools, config);
    if !input.namespace_in_request {
        let meta = pod
            .as_object_mut()
            .expect("a pod is an object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        meta["namespace"] = json!(input.namespace.get(&pools.namespaces));
    }
    let req = Request {
        api_version: if input.v1beta1 {
            "admission.k8s.io/v1beta1"
        } else {
            "admission.k8s.io/v1"
        },
        uid: input.uid.get(&pools.uids),
        namespace: input
            .namespace_in_request
            .then(|| input.namespace.get(&pools.namespaces)),
        name: input.name.as_ref().map(|n| n.get(&pools.names)),
        dry_run: input.dry_run,
    };
    let body = req.body(&pod);
    let reviewed = review(config, &body).expect("a well-formed review is answered");
    let out: Value = serde_json::from_slice(&reviewed.response).expect("the response is JSON");
    match &reviewed.decision {
        Decision::Patched(p) => {
            let written = input
                .pod
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.persistence.as_ref());
            let namespace = req
                .namespace
                .clone()
                .or_else(|| pod["metadata"]["namespace"].as_str().map(str::to_owned))
                .unwrap_or_default();
            // The model covers fresh pods; a pod that already carries
            // volumes or mounts named like ours (a reinvocation, a replay)
            // is held to the invariants above and to idempotence.
            let fresh = !pod
                .to_string()
                .contains(&format!("\"{}", spec::VOLUME_PREFIX));
            let parts = match written {
                _ if !fresh => None,
                None => Some((None, None, None)),
                Some(s) => selection_parts(s, &pools, &container_names(&pod)).map(|(p, _)| p),
            };
            let model = parts
                .map(|parts| move |patched: &Value| modelled(config, &namespace, &parts, patched));
            check_patched(
                config,
                &req,
                &pod,
                p.patch(),
                &out,
                model
                    .as_ref()
                    .map(|m| m as &dyn Fn(&Value) -> spec::Selection),
            )
        }
        Decision::Unchanged(_) => {
            assert_eq!(out["response"]["allowed"], true, "{out}");
            assert!(out["response"].get("patch").is_none(), "{out}");
        }
        Decision::Denied(d) => check_refused(&out, &d.to_string()),
        Decision::Invalid(m) => check_refused(&out, m),
    }

    // SPEC §5: a dry run gets exactly the same answer.
    let dry = Request {
        dry_run: Some(!req.dry_run.unwrap_or(false)),
        ..req
    };
    let again = review(config, &dry.body(&pod)).expect("a well-formed review is answered");
    assert_eq!(
        again.decision, reviewed.decision,
        "dryRun changed the decision"
    );
    assert_eq!(
        again.response, reviewed.response,
        "dryRun changed the response"
    );
});

/// The pod's container names as the generator saw them (init first), and
/// the name of none.
fn container_names(pod: &Value) -> Vec<String> {
    let mut names: Vec<String> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod["spec"][k].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    names.push("missing".to_owned());
    names
}

/// The selection SPEC §3 gives a patched pod whose selection the generator
/// built (or left out). The run's sub-path is read back from the answer's
/// record: its rules (normalisation, isolated namespaces) are checked by the
/// golden and property tests; here the env, volumes and mounts must agree
/// with it.
fn modelled(config: &Config, namespace: &str, parts: &Parts, patched: &Value) -> spec::Selection {
    let (data, outputs, containers) = parts;
    let data = match data {
        None => config
            .available(Role::Data, namespace)
            .map(describe)
            .collect(),
        Some(names) => {
            let names: std::collections::BTreeSet<&String> = names.iter().collect();
            names
                .into_iter()
                .map(|n| describe(config.store(n).expect("a patched pod names known stores")))
                .collect()
        }
    };
    let outputs = match outputs {
        None => config.default_outputs(namespace),
        Some(Value::String(name)) => config.store(name),
        Some(other) => panic!("patched although outputs is {other}"),
    };
    let record: Value = patched["metadata"]["annotations"][spec::ANN_INJECTED]
        .as_str()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let outputs = outputs.map(|store| {
        let prefix = format!("{}/", store.path().trim_end_matches('/'));
        let sub = record["outputsPath"]
            .as_str()
            .and_then(|p| p.strip_prefix(&prefix))
            .unwrap_or_else(|| {
                panic!(
                    "outputsPath {} is not under {prefix}",
                    record["outputsPath"]
                )
            });
        (describe(store), sub.to_owned())
    });
    spec::Selection {
        data,
        outputs,
        containers: containers.as_ref().map(|c| c.iter().cloned().collect()),
    }
}

fn check_refused(out: &Value, message: &str) {
    assert_eq!(out["response"]["allowed"], false, "{out}");
    assert_eq!(out["response"]["status"]["message"].as_str(), Some(message));
    assert!(out["response"].get("patch").is_none(), "{out}");
}
