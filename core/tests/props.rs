//! Property tests of `review` over generated configs and pods (STYLE.md,
//! tests 3).
//!
//! Configs are generated as YAML text, with every store kind and some stores
//! limited to namespaces, and loaded through `Config::from_yaml`. Pods are
//! generated as raw JSON carrying fields the webhook does not know, wrapped in
//! an AdmissionReview, and their selection is always a valid one. Every
//! answer is checked against SPEC.md's invariants (the patch applies, the
//! result is a Pod, admitting it again changes nothing, nothing else moves)
//! and against the one model of SPEC §3 and §4 in `tests/model/spec.rs`,
//! independent of the crate's own code.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use persistence_webhook_core::k8s::Pod;
use persistence_webhook_core::review::{review, Decision, ReviewError, Skip};
use persistence_webhook_core::Config;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Names from SPEC.md, spelled out here rather than imported, so that the
// tests pin the contract and not the implementation.

#[path = "model/spec.rs"]
mod spec;

#[path = "writer/mod.rs"]
mod writer;

use spec::{
    ANN_INJECTED, ANN_SELECTION as ANN_PERSISTENCE, ANN_SUBPATH, ANN_UNIQUE_NAME, ENV_DATA_PATHS,
    ENV_GOOGLE, LABEL_INJECTION,
};

const NAMESPACES: [&str; 3] = ["default", "team-a", "team-b"];
const SECRETS: [&str; 4] = ["gcs-secret", "s3-secret", "az-secret", "shared-creds"];
/// `KEYS[i]` is the key normally used with `SECRETS[i]`.
const KEYS: [&str; 4] = ["gcs-key.json", "s3-key.json", "az-key.json", "key.json"];
/// Masks over the available data stores and the pod's containers are this long.
const MASK: usize = 6;

// ---------------------------------------------------------------------------
// Running

fn proptest_config() -> ProptestConfig {
    // Cases default to 256 (PROPTEST_CASES overrides); no regression files
    // are written into the repository.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(proptest_config());
    match runner.run(&strategy, test) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("property failed: {why}\nminimal failing input: {input:#?}")
        }
        Err(TestError::Abort(why)) => panic!("property aborted: {why}"),
    }
}

fn cases() -> u32 {
    proptest_config().cases
}

fn fail(what: impl fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// Counts how often interesting situations were exercised, so that a
/// generator that stopped producing them fails the test instead of passing
/// vacuously.
#[derive(Default)]
struct Coverage(RefCell<BTreeMap<&'static str, usize>>);

impl Coverage {
    fn hit(&self, what: &'static str) {
        *self.0.borrow_mut().entry(what).or_default() += 1;
    }

    fn require(&self, whats: &[&'static str]) {
        if cases() < 64 {
            return; // too few cases to expect every situation
        }
        let seen = self.0.borrow();
        for what in whats {
            assert!(
                seen.get(what).copied().unwrap_or(0) > 0,
                "the generator never produced {what:?}; seen: {seen:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Config generation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    HostPath,
    Claim,
    EmptyDir,
    Gcs,
    S3,
    Azure,
}

impl Kind {
    fn provider(self) -> Option<&'static str> {
        match self {
            Kind::Gcs => Some("gcs"),
            Kind::S3 => Some("s3"),
            Kind::Azure => Some("azure"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct GenStore {
    name: String,
    outputs: bool,
    kind: Kind,
    read_only: Option<bool>,
    namespaces: Option<Vec<&'static str>>,
    secret: usize,
    key: usize,
    trailing_slash: bool,
    bucket_suffix: &'static str,
    /// SPEC §7: no secret at all (workload identity).
    keyless: bool,
    /// SPEC §7 extras, kept only where the store kind takes them: an
    /// endpoint (s3, gcs), a region (s3), and SDK keys (s3: a pair, maybe a
    /// token; azure: a connection string or an account key).
    endpoint: Option<&'static str>,
    region: Option<&'static str>,
    sdk: u8,
}

impl GenStore {
    fn mount_path(&self) -> String {
        let section = if self.outputs { "outputs" } else { "data" };
        let slash = if self.trailing_slash { "/" } else { "" };
        format!("/{section}/{}{slash}", self.name)
    }

    fn bucket(&self) -> String {
        let (name, suffix) = (&self.name, self.bucket_suffix);
        match self.kind {
            Kind::Gcs => format!("gs://{name}-bucket{suffix}"),
            Kind::S3 => format!("s3://{name}-bucket{suffix}"),
            _ => format!("wasbs://{name}@acct.blob.core.windows.net{suffix}"),
        }
    }

    fn available_in(&self, ns: &str) -> bool {
        self.namespaces.as_ref().is_none_or(|l| l.contains(&ns))
    }

    fn secret(&self) -> &'static str {
        SECRETS[self.secret]
    }

    fn secret_key(&self) -> &'static str {
        KEYS[self.key]
    }

    fn fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self.kind.provider() {
            None => {
                m.insert("mountPath".into(), json!(self.mount_path()));
                match self.kind {
                    Kind::HostPath => {
                        m.insert("hostPath".into(), json!(format!("/mnt/{}", self.name)));
                    }
                    Kind::Claim => {
                        m.insert("existingClaim".into(), json!(format!("{}.pvc", self.name)));
                    }
                    _ => {}
                }
                if let Some(ro) = self.read_only {
                    m.insert("readOnly".into(), json!(ro));
                }
            }
            Some(provider) => {
                m.insert("store".into(), json!(provider));
                m.insert("bucket".into(), json!(self.bucket()));
                if !self.keyless {
                    m.insert("secret".into(), json!(self.secret()));
                    m.insert("secretKey".into(), json!(self.secret_key()));
                }
                if let Some(e) = self.endpoint() {
                    m.insert("endpoint".into(), json!(e));
                }
                if let Some(r) = self.region() {
                    m.insert("region".into(), json!(r));
                }
                for (field, key) in self.sdk_keys() {
                    m.insert(field.into(), json!(key));
                }
            }
        }
        if let Some(ns) = &self.namespaces {
            m.insert("namespaces".into(), json!(ns));
        }
        m
    }

    fn endpoint(&self) -> Option<&'static str> {
        self.endpoint
            .filter(|_| matches!(self.kind, Kind::S3 | Kind::Gcs))
    }

    fn region(&self) -> Option<&'static str> {
        self.region.filter(|_| self.kind == Kind::S3)
    }

    /// The SDK key fields this store has (none on a keyless store).
    fn sdk_keys(&self) -> Vec<(&'static str, String)> {
        if self.keyless {
            return Vec::new();
        }
        let key = |what: &str| format!("{}-{what}", self.name);
        match (self.kind, self.sdk % 3) {
            (Kind::S3, 1) => vec![
                ("accessKeyIdKey", key("id")),
                ("secretAccessKeyKey", key("secret")),
            ],
            (Kind::S3, 2) => vec![
                ("accessKeyIdKey", key("id")),
                ("secretAccessKeyKey", key("secret")),
                ("sessionTokenKey", key("token")),
            ],
            (Kind::Azure, 1) => vec![("connectionStringKey", key("conn"))],
            (Kind::Azure, 2) => vec![("accountKeyKey", "key".to_owned())],
            _ => Vec::new(),
        }
    }

    /// The store as the SPEC model in tests/model/spec.rs takes it.
    fn describe(&self) -> spec::StoreSpec {
        let volume = |source| spec::StoreKind::Volume {
            mount_path: self.mount_path(),
            source,
            read_only: self.read_only.unwrap_or(false),
        };
        let kind = match self.kind {
            Kind::HostPath => volume(spec::Source::HostPath(format!("/mnt/{}", self.name))),
            Kind::Claim => volume(spec::Source::Claim(format!("{}.pvc", self.name))),
            Kind::EmptyDir => volume(spec::Source::EmptyDir),
            Kind::Gcs | Kind::S3 | Kind::Azure => spec::StoreKind::Cloud {
                provider: self.kind.provider().expect("a cloud kind").to_owned(),
                bucket: self.bucket(),
                secret: (!self.keyless).then(|| self.secret().to_owned()),
                secret_key: (!self.keyless).then(|| self.secret_key().to_owned()),
                endpoint: self.endpoint().map(|e| e.trim_end_matches('/').to_owned()),
                region: self.region().map(str::to_owned),
                sdk_keys: self
                    .sdk_keys()
                    .into_iter()
                    .map(|(f, k)| (f.to_owned(), k))
                    .collect(),
            },
        };
        spec::StoreSpec {
            name: self.name.clone(),
            kind,
            volume_name: None,
        }
    }
}

#[derive(Debug, Clone)]
struct ConfigSpec {
    data: Vec<GenStore>,
    outputs: Vec<GenStore>,
    default_outputs: Option<Index>,
    /// Under a top-level `persistence:` key, next to other Helm values.
    wrapped: bool,
    /// Each store as a flow mapping rather than a block.
    flow: bool,
}

/// YAML reads these unquoted as something other than a string.
fn needs_quotes(s: &str) -> bool {
    const WORDS: [&str; 11] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf",
    ];
    !s.starts_with(|c: char| c.is_ascii_lowercase() || c == '/') || WORDS.contains(&s)
}

fn yaml_str(s: &str) -> String {
    let plain = !needs_quotes(s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/:@._-".contains(c))
        && !s.ends_with(':');
    if plain {
        s.to_owned()
    } else {
        Value::from(s).to_string()
    }
}

fn yaml_value(v: &Value) -> String {
    match v {
        Value::String(s) => yaml_str(s),
        other => other.to_string(),
    }
}

impl ConfigSpec {
    fn yaml(&self) -> String {
        let mut out = String::from("# generated\n");
        let indent = if self.wrapped {
            out.push_str("ingress: {enabled: false}\npersistence:\n");
            "  "
        } else {
            ""
        };
        for (section, stores) in [("data", &self.data), ("outputs", &self.outputs)] {
            if stores.is_empty() {
                out.push_str(&format!("{indent}{section}: {{}}\n"));
                continue;
            }
            out.push_str(&format!("{indent}{section}:\n"));
            for s in stores {
                let key = yaml_str(&s.name);
                let fields = s.fields();
                if self.flow {
                    out.push_str(&format!("{indent}  {key}: {}\n", Value::Object(fields)));
                } else {
                    out.push_str(&format!("{indent}  {key}:\n"));
                    for (k, v) in &fields {
                        out.push_str(&format!("{indent}    {k}: {}\n", yaml_value(v)));
                    }
                }
            }
        }
        if let Some(name) = self.default_outputs_name() {
            out.push_str(&format!("{indent}defaultOutputs: {}\n", yaml_str(name)));
        }
        out
    }

    fn default_outputs_name(&self) -> Option<&str> {
        let i = self.default_outputs.as_ref()?;
        (!self.outputs.is_empty()).then(|| self.outputs[i.index(self.outputs.len())].name.as_str())
    }

    /// Stores of a section available to `ns`, in name order (SPEC §3).
    fn available(&self, outputs: bool, ns: &str) -> Vec<&GenStore> {
        let list = if outputs { &self.outputs } else { &self.data };
        let mut v: Vec<&GenStore> = list.iter().filter(|s| s.available_in(ns)).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn default_outputs(&self, ns: &str) -> Option<&GenStore> {
        let named = self
            .default_outputs_name()
            .and_then(|n| self.outputs.iter().find(|s| s.name == n))
            .filter(|s| s.available_in(ns));
        named.or_else(|| self.available(true, ns).into_iter().next())
    }
}

fn store_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[a-z]",
        12 => "[a-z][a-z0-9-]{0,8}[a-z0-9]",
        // A leading digit: a valid label that YAML may read as a number.
        2 => "[0-9][a-z0-9]{0,3}",
        // Long enough that the pod volume name must be shortened.
        1 => "[a-z]{58,63}",
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::HostPath),
        Just(Kind::Claim),
        Just(Kind::EmptyDir),
        Just(Kind::Gcs),
        Just(Kind::S3),
        Just(Kind::Azure),
    ]
}

fn store(outputs: bool) -> impl Strategy<Value = GenStore> {
    // readOnly on an outputs store is a config error: produced rarely.
    let read_only = if outputs {
        prop_oneof![12 => Just(None), 6 => Just(Some(false)), 1 => Just(Some(true))].boxed()
    } else {
        prop_oneof![Just(None), Just(Some(false)), Just(Some(true))].boxed()
    };
    (
        store_name(),
        kind(),
        read_only,
        proptest::option::weighted(
            0.3,
            proptest::sample::subsequence(NAMESPACES.to_vec(), 1..=2),
        ),
        0..SECRETS.len(),
        // Another secret's key: a config error when the secrets differ.
        proptest::option::weighted(0.05, 0..KEYS.len()),
        any::<bool>(),
        proptest::sample::select(vec!["", "/", "/prefix", "/runs/"]),
        (
            proptest::bool::weighted(0.2),
            proptest::option::weighted(
                0.3,
                proptest::sample::select(vec![
                    "http://minio.storage:9000",
                    "https://[::1]:4443/",
                    "http://127.0.0.1:4443",
                ]),
            ),
            proptest::option::weighted(0.3, proptest::sample::select(vec!["us-east-1", "eu_1"])),
            any::<u8>(),
        ),
    )
        .prop_map(
            move |(
                name,
                kind,
                read_only,
                namespaces,
                secret,
                key,
                trailing_slash,
                suffix,
                (keyless, endpoint, region, sdk),
            )| {
                GenStore {
                    keyless,
                    endpoint,
                    region,
                    sdk,
                    name,
                    outputs,
                    kind,
                    read_only: read_only.filter(|_| kind.provider().is_none()),
                    namespaces,
                    secret,
                    key: key.unwrap_or(secret),
                    trailing_slash,
                    bucket_suffix: suffix,
                }
            },
        )
}

fn config_spec() -> impl Strategy<Value = ConfigSpec> {
    (
        proptest::collection::vec(store(false), 0..=5),
        proptest::collection::vec(store(true), 0..=3),
        proptest::option::of(any::<Index>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(data, outputs, default_outputs, wrapped, flow)| ConfigSpec {
                data,
                outputs,
                default_outputs,
                wrapped,
                flow,
            },
        )
}

/// A config the crate accepted, with the spec it was written from.
#[derive(Clone)]
struct Fixture {
    spec: ConfigSpec,
    config: Config,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config YAML:\n{}", self.spec.yaml())
    }
}

fn fixture() -> impl Strategy<Value = Fixture> {
    config_spec().prop_filter_map("config refused by Config::from_yaml", |spec| {
        let config = Config::from_yaml(&spec.yaml()).ok()?;
        Some(Fixture { spec, config })
    })
}

// ---------------------------------------------------------------------------
// Pod generation

#[derive(Debug, Clone)]
enum Naming {
    Name(String),
    Generate(String),
    Neither,
}

/// `metadata.ownerReferences` as controllers set them (SPEC §3 rule 3).
#[derive(Debug, Clone)]
enum Owners {
    /// No list.
    None,
    /// A `batch/v1` Job controls the pod, among other owners or alone.
    Job { name: String, others: bool },
    /// A Job that owns but does not control it, or a ReplicaSet that controls it.
    NotAJobController(String),
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    YamlFlow,
    YamlBlock,
}

#[derive(Debug, Clone)]
struct SelectionPlan {
    /// `None`: no `data` key; else a mask over the available data stores.
    data: Option<Vec<bool>>,
    /// `None`: no `outputs` key; else picks among the available outputs stores.
    outputs: Option<Index>,
    /// `None`: no `containers` key; else a mask over the pod's containers.
    containers: Option<Vec<bool>>,
    /// Name the data stores in reverse order, and the first one twice.
    reversed: bool,
    duplicated: bool,
    format: Format,
}

#[derive(Debug, Clone)]
struct ContainerPlan {
    /// `None`: no `env`; else a mask over [`unrelated_env`].
    env: Option<Vec<bool>>,
    /// `None`: no `volumeMounts`; else how many of the pod's own mounts.
    mounts: Option<usize>,
    extra: bool,
}

#[derive(Debug, Clone)]
struct PodPlan {
    namespace: &'static str,
    namespace_in_metadata: bool,
    naming: Naming,
    owners: Owners,
    /// `None`: no annotations map unless one of ours is set.
    annotations: Option<Vec<(String, String)>>,
    selection: Option<SelectionPlan>,
    subpath: Option<String>,
    unique_name: Option<String>,
    /// A garbled `persistence-injected` left on the pod; it is replaced.
    stale_injected: Option<&'static str>,
    labels: Option<Vec<(String, String)>>,
    base: String,
    containers: Vec<ContainerPlan>,
    init_containers: Vec<ContainerPlan>,
    volumes: Option<usize>,
    extras: bool,
    uid: String,
    api_version: &'static str,
    dry_run: Option<bool>,
}

fn unrelated_env() -> [Value; 6] {
    [
        json!({"name": "FOO", "value": "bar"}),
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "EMPTY"}),
        json!({"name": ENV_GOOGLE, "value": "/own/creds.json"}),
        // SDK variables the container sets itself: kept (SPEC §7).
        json!({"name": "AWS_REGION", "value": "own-region"}),
        json!({"name": "AZURE_STORAGE_CONNECTION_STRING", "valueFrom": {"secretKeyRef": {"name": "own", "key": "conn"}}}),
    ]
}

fn own_volumes() -> [Value; 5] {
    [
        // The preferred volume names of stores `a` and `b` (generated
        // often), with content no store has: the store's volume gets
        // another name (SPEC §4), never a denial.
        json!({"name": "pw-a", "hostPath": {"path": "/own/elsewhere"}}),
        json!({"name": "pw-b", "secret": {"secretName": "own"}}),
        json!({"name": "own-0", "emptyDir": {}}),
        json!({"name": "own-1", "configMap": {"name": "cfg", "defaultMode": 420}, "x-extra": {"k": [1, 2]}}),
        json!({"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420,
            "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}),
    ]
}

fn container_plan() -> impl Strategy<Value = ContainerPlan> {
    (
        proptest::option::of(proptest::collection::vec(any::<bool>(), 6)),
        proptest::option::of(0..=2usize),
        any::<bool>(),
    )
        .prop_map(|(env, mounts, extra)| ContainerPlan { env, mounts, extra })
}

fn selection_plan() -> impl Strategy<Value = SelectionPlan> {
    (
        proptest::option::of(proptest::collection::vec(any::<bool>(), MASK)),
        proptest::option::of(any::<Index>()),
        proptest::option::weighted(0.3, proptest::collection::vec(any::<bool>(), MASK)),
        prop_oneof![
            Just(Format::Json),
            Just(Format::YamlFlow),
            Just(Format::YamlBlock)
        ],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(data, outputs, containers, format, reversed, duplicated)| SelectionPlan {
                data,
                outputs,
                containers,
                reversed,
                duplicated,
                format,
            },
        )
}

fn naming() -> impl Strategy<Value = Naming> {
    prop_oneof![
        3 => "[a-z][a-z0-9-]{0,12}[a-z0-9]".prop_map(Naming::Name),
        2 => "[a-z][a-z0-9-]{0,12}-".prop_map(Naming::Generate),
        1 => Just(Naming::Neither),
    ]
}

fn owners() -> impl Strategy<Value = Owners> {
    prop_oneof![
        3 => Just(Owners::None),
        2 => ("[a-z][a-z0-9-]{0,12}[a-z0-9]", any::<bool>())
            .prop_map(|(name, others)| Owners::Job { name, others }),
        1 => "[a-z][a-z0-9-]{0,12}[a-z0-9]".prop_map(Owners::NotAJobController),
    ]
}

fn unique_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,4}\\.[a-z]{1,4}\\.[0-9]{1,3}",
        "[a-z]{1,4}\\.[a-z]{1,4}\\.[0-9]{1,2}\\.[0-9]{1,3}",
        "[a-z]{1,4}\\.[a-z]{1,4}\\.(jobs|builds|notebooks|tensorboards)\\.[0-9]{1,3}",
    ]
}

/// Keys with `/` and `~`, which a JSON pointer must escape.
fn unrelated_annotations() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                "[a-z]{1,5}(/|~|~0|~1|/~|~/)[a-z]{0,5}",
                Just("example.com/a~b".to_owned()),
                Just("kubectl.kubernetes.io/last-applied-configuration".to_owned()),
            ],
            "[ -~]{0,12}",
        ),
        0..4,
    )
}

fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec(("[a-z]{1,6}(\\.io/[a-z]{1,5})?", "[a-z0-9]{0,6}"), 0..4)
}

fn pod_plan() -> impl Strategy<Value = PodPlan> {
    let who = (
        proptest::sample::select(NAMESPACES.to_vec()),
        any::<bool>(),
        naming(),
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}",
        prop_oneof![7 => Just("admission.k8s.io/v1"), 1 => Just("admission.k8s.io/v1beta1")],
        (proptest::option::of(any::<bool>()), owners()),
    );
    let metadata = (
        proptest::option::of(unrelated_annotations()),
        proptest::option::weighted(0.8, selection_plan()),
        proptest::option::weighted(
            0.25,
            "[a-z~_][a-z0-9~._-]{0,5}(/[a-z~_][a-z0-9~._-]{0,5}){0,2}",
        ),
        proptest::option::weighted(0.25, unique_name()),
        proptest::option::weighted(
            0.1,
            proptest::sample::select(vec![
                "not json",
                "null",
                r#"{"data":[]}"#,
                r#"{"outputsPath":"/elsewhere/x"}"#,
            ]),
        ),
        proptest::option::of(labels()),
    );
    let spec = (
        "[a-z][a-z0-9]{0,6}",
        proptest::collection::vec(container_plan(), 1..=3),
        proptest::collection::vec(container_plan(), 0..=2),
        proptest::option::of(0..=5usize),
        any::<bool>(),
    );
    (who, metadata, spec).prop_map(
        |(
            (namespace, namespace_in_metadata, naming, uid, api_version, (dry_run, owners)),
            (annotations, selection, subpath, unique_name, stale_injected, labels),
            (base, containers, init_containers, volumes, extras),
        )| PodPlan {
            namespace,
            namespace_in_metadata,
            naming,
            owners,
            annotations,
            selection,
            subpath,
            unique_name,
            stale_injected,
            labels,
            base,
            containers,
            init_containers,
            volumes,
            extras,
            uid,
            api_version,
            dry_run,
        },
    )
}

/// A generated pod, the stores it selected (for coverage) and what SPEC
/// §3-§4 says it gets, from the one model in tests/model/spec.rs.
struct Built {
    pod: Value,
    data: Vec<GenStore>,
    outputs: Option<GenStore>,
    expected: spec::Expected,
}

impl Built {
    fn selected(&self) -> impl Iterator<Item = &GenStore> {
        self.data.iter().chain(&self.outputs)
    }
}

fn container_names(plan: &PodPlan) -> Vec<String> {
    let init = (0..plan.init_containers.len()).map(|i| format!("{}-init{i}", plan.base));
    let main = (0..plan.containers.len()).map(|i| format!("{}-{i}", plan.base));
    init.chain(main).collect()
}

fn selection_text(
    sel: &SelectionPlan,
    data: Option<&[&GenStore]>,
    outputs: Option<&GenStore>,
    containers: Option<&[String]>,
) -> String {
    let data: Option<Vec<&str>> = data.map(|d| d.iter().map(|s| s.name.as_str()).collect());
    let outputs = outputs.map(|s| s.name.as_str());
    match sel.format {
        Format::Json => {
            let mut m = Map::new();
            if let Some(d) = &data {
                m.insert("data".into(), json!(d));
            }
            if let Some(o) = outputs {
                m.insert("outputs".into(), json!(o));
            }
            if let Some(c) = containers {
                m.insert("containers".into(), json!(c));
            }
            Value::Object(m).to_string()
        }
        Format::YamlFlow => {
            let list = |l: &[&str]| l.iter().map(|s| yaml_str(s)).collect::<Vec<_>>().join(", ");
            let mut parts = Vec::new();
            if let Some(d) = &data {
                parts.push(format!("data: [{}]", list(d)));
            }
            if let Some(o) = outputs {
                parts.push(format!("outputs: {}", yaml_str(o)));
            }
            if let Some(c) = containers {
                let c: Vec<&str> = c.iter().map(String::as_str).collect();
                parts.push(format!("containers: [{}]", list(&c)));
            }
            format!("{{{}}}", parts.join(", "))
        }
        Format::YamlBlock => {
            let mut out = String::new();
            let block = |out: &mut String, key: &str, l: &[&str]| {
                if l.is_empty() {
                    out.push_str(&format!("{key}: []\n"));
                } else {
                    out.push_str(&format!("{key}:\n"));
                    for s in l {
                        out.push_str(&format!("  - {}\n", yaml_str(s)));
                    }
                }
            };
            if let Some(d) = &data {
                block(&mut out, "data", d);
            }
            if let Some(o) = outputs {
                out.push_str(&format!("outputs: {}\n", yaml_str(o)));
            }
            if let Some(c) = containers {
                let c: Vec<&str> = c.iter().map(String::as_str).collect();
                block(&mut out, "containers", &c);
            }
            out
        }
    }
}

fn build(fx: &Fixture, plan: &PodPlan) -> Built {
    let spec = &fx.spec;
    let ns = plan.namespace;
    let names = container_names(plan);

    // The selection, always a valid one (SPEC §3).
    let avail_data = spec.available(false, ns);
    let avail_outputs = spec.available(true, ns);
    let mut annotations = Map::new();
    let (data, outputs_store, targeted) = match &plan.selection {
        None => (
            avail_data.clone(),
            spec.default_outputs(ns),
            names.iter().cloned().collect::<BTreeSet<_>>(),
        ),
        Some(sel) => {
            let data: Option<Vec<&GenStore>> = sel.data.as_ref().map(|mask| {
                avail_data
                    .iter()
                    .zip(mask.iter().cycle())
                    .filter(|(_, keep)| **keep)
                    .map(|(s, _)| *s)
                    .collect()
            });
            let outputs = sel
                .outputs
                .as_ref()
                .filter(|_| !avail_outputs.is_empty())
                .map(|i| avail_outputs[i.index(avail_outputs.len())]);
            let containers: Option<Vec<String>> = sel.containers.as_ref().map(|mask| {
                let picked: Vec<String> = names
                    .iter()
                    .zip(mask.iter().cycle())
                    .filter(|(_, keep)| **keep)
                    .map(|(n, _)| n.clone())
                    .collect();
                if picked.is_empty() {
                    vec![names[0].clone()]
                } else {
                    picked
                }
            });
            // As written by the run: any order, maybe a name twice.
            let written = data.as_ref().map(|d| {
                let mut w = d.clone();
                if sel.reversed {
                    w.reverse();
                }
                if sel.duplicated && !d.is_empty() {
                    w.push(d[0]);
                }
                w
            });
            let text = selection_text(sel, written.as_deref(), outputs, containers.as_deref());
            annotations.insert(ANN_PERSISTENCE.into(), json!(text));
            (
                data.unwrap_or_else(|| avail_data.clone()),
                outputs.or_else(|| spec.default_outputs(ns)),
                containers
                    .map(|c| c.into_iter().collect())
                    .unwrap_or_else(|| names.iter().cloned().collect()),
            )
        }
    };

    // The outputs sub-path annotations (SPEC §3).
    if let Some(p) = &plan.subpath {
        annotations.insert(ANN_SUBPATH.into(), json!(p));
    }
    if let Some(u) = &plan.unique_name {
        annotations.insert(ANN_UNIQUE_NAME.into(), json!(u));
    }
    if let Some(s) = plan.stale_injected {
        annotations.insert(ANN_INJECTED.into(), json!(s));
    }
    let mut metadata = Map::new();
    match &plan.naming {
        Naming::Name(n) => {
            metadata.insert("name".into(), json!(n));
        }
        Naming::Generate(g) => {
            metadata.insert("generateName".into(), json!(g));
        }
        Naming::Neither => {}
    }
    let owner = |api: &str, kind: &str, name: &str, controller: bool| {
        json!({"apiVersion": api, "kind": kind, "name": name,
            "uid": "6f1c2a4e-0000-4000-8000-000000000001",
            "controller": controller, "blockOwnerDeletion": true})
    };
    match &plan.owners {
        Owners::None => {}
        Owners::Job { name, others } => {
            let mut refs = vec![owner("batch/v1", "Job", name, true)];
            if *others {
                refs.insert(0, owner("v1", "ConfigMap", "cfg", false));
            }
            metadata.insert("ownerReferences".into(), json!(refs));
        }
        Owners::NotAJobController(name) => {
            metadata.insert(
                "ownerReferences".into(),
                json!([
                    owner("batch/v1", "Job", name, false),
                    owner("apps/v1", "ReplicaSet", &format!("{name}-rs"), true)
                ]),
            );
        }
    }
    if plan.namespace_in_metadata {
        metadata.insert("namespace".into(), json!(ns));
    }
    if let Some(list) = &plan.annotations {
        for (k, v) in list {
            annotations.insert(k.clone(), json!(v));
        }
    }
    if plan.annotations.is_some() || !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    if let Some(list) = &plan.labels {
        let mut labels: Map<String, Value> =
            list.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        if list.len() % 2 == 1 {
            // Opted in explicitly: only `disabled` opts out.
            labels.insert(LABEL_INJECTION.into(), json!("enabled"));
        }
        metadata.insert("labels".into(), Value::Object(labels));
    }
    if plan.extras {
        metadata.insert(
            "managedFields".into(),
            json!([{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}, "f:spec": {}}}]),
        );
        metadata.insert("x-extra".into(), json!({"nested": [1, "two", null]}));
        metadata.insert("creationTimestamp".into(), Value::Null);
    }

    let container = |name: &str, c: &ContainerPlan| {
        let mut m = Map::new();
        m.insert("name".into(), json!(name));
        m.insert("image".into(), json!("python:3.11"));
        if let Some(mask) = &c.env {
            let env: Vec<Value> = unrelated_env()
                .into_iter()
                .zip(mask)
                .filter(|(_, keep)| **keep)
                .map(|(e, _)| e)
                .collect();
            m.insert("env".into(), Value::Array(env));
        }
        if let Some(n) = c.mounts {
            let mounts: Vec<Value> = (0..n)
                .map(|i| {
                    let mut mount =
                        json!({"name": format!("own-{i}"), "mountPath": format!("/own/{i}")});
                    if i == 1 {
                        mount["readOnly"] = json!(true);
                    }
                    mount
                })
                .collect();
            m.insert("volumeMounts".into(), Value::Array(mounts));
        }
        if c.extra {
            m.insert("x-extra".into(), json!(true));
            m.insert(
                "resources".into(),
                json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
            );
            m.insert(
                "ports".into(),
                json!([{"containerPort": 8080, "protocol": "TCP"}]),
            );
        }
        Value::Object(m)
    };
    let mut pod_spec = Map::new();
    if !plan.init_containers.is_empty() {
        let list: Vec<Value> = plan
            .init_containers
            .iter()
            .zip(&names)
            .map(|(c, n)| container(n, c))
            .collect();
        pod_spec.insert("initContainers".into(), Value::Array(list));
    }
    let main_names = &names[plan.init_containers.len()..];
    let list: Vec<Value> = plan
        .containers
        .iter()
        .zip(main_names)
        .map(|(c, n)| container(n, c))
        .collect();
    pod_spec.insert("containers".into(), Value::Array(list));
    if let Some(n) = plan.volumes {
        let vols: Vec<Value> = own_volumes().into_iter().take(n).collect();
        pod_spec.insert("volumes".into(), Value::Array(vols));
    }
    if plan.extras {
        pod_spec.insert("x-extra".into(), json!({"a": 1}));
        pod_spec.insert("nodeSelector".into(), json!({"pool": "gpu"}));
        pod_spec.insert("restartPolicy".into(), json!("Never"));
    }

    let mut pod = Map::new();
    pod.insert("apiVersion".into(), json!("v1"));
    pod.insert("kind".into(), json!("Pod"));
    if !metadata.is_empty() || !plan.extras {
        pod.insert("metadata".into(), Value::Object(metadata));
    }
    pod.insert("spec".into(), Value::Object(pod_spec));
    if plan.extras {
        pod.insert("status".into(), json!({}));
        pod.insert("x-extra".into(), json!([{"k": "v"}]));
    }

    // The outputs sub-path, first match wins (SPEC §3).
    let pod = Value::Object(pod);
    let sub_path = spec::sub_path(
        &pod["metadata"]["annotations"],
        ns,
        &pod["metadata"],
        &plan.uid,
    )
    .expect("the generator only makes run names");
    let selection = spec::Selection {
        data: data.iter().map(|s| s.describe()).collect(),
        outputs: outputs_store.map(|s| (s.describe(), sub_path)),
        containers: Some(targeted),
    };
    Built {
        expected: spec::expect(&selection),
        pod,
        data: data.into_iter().cloned().collect(),
        outputs: outputs_store.cloned(),
    }
}

/// The AdmissionReview the API server would send for `pod`.
fn review_body(plan: &PodPlan, pod: &Value, uid: &str, dry_run: Option<bool>) -> Value {
    let mut request = json!({
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "namespace": plan.namespace,
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:job-controller",
            "groups": ["system:serviceaccounts", "system:authenticated"]},
        "object": pod,
        "oldObject": null,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    });
    if let Naming::Name(n) = &plan.naming {
        request["name"] = json!(n);
    }
    if let Some(d) = dry_run {
        request["dryRun"] = json!(d);
    }
    json!({"kind": "AdmissionReview", "apiVersion": plan.api_version, "request": request})
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value always serialises")
}

// ---------------------------------------------------------------------------
// Checks

/// The response is an AdmissionReview that echoes the request's uid and
/// apiVersion (SPEC §5); returns it parsed.
fn check_echo(response: &[u8], api_version: &str, uid: &str) -> Result<Value, TestCaseError> {
    let resp: Value = serde_json::from_slice(response)
        .map_err(|e| fail(format!("the response is not JSON: {e}")))?;
    prop_assert_eq!(
        &resp["apiVersion"],
        &json!(api_version),
        "apiVersion echoed"
    );
    prop_assert_eq!(&resp["kind"], &json!("AdmissionReview"));
    prop_assert_eq!(&resp["response"]["uid"], &json!(uid), "uid echoed");
    Ok(resp)
}

/// An allowed answer without a patch.
fn check_unchanged_wire(resp: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(&resp["response"]["allowed"], &json!(true));
    let r = resp["response"]
        .as_object()
        .ok_or_else(|| fail("no response"))?;
    prop_assert!(
        !r.contains_key("patch") && !r.contains_key("patchType"),
        "{resp}"
    );
    Ok(())
}

/// The base64 JSON Patch of an allowed, patched answer (SPEC §5).
fn wire_patch(resp: &Value) -> Result<json_patch::Patch, TestCaseError> {
    prop_assert_eq!(&resp["response"]["allowed"], &json!(true));
    prop_assert_eq!(&resp["response"]["patchType"], &json!("JSONPatch"));
    let b64 = resp["response"]["patch"]
        .as_str()
        .ok_or_else(|| fail(format!("patch is not a string: {resp}")))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| fail(format!("patch is not base64: {e}")))?;
    serde_json::from_slice(&raw).map_err(|e| fail(format!("patch is not a JSON Patch: {e}")))
}

fn array<'v>(v: &'v Value, key: &str) -> &'v [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Every SPEC property of one allowed, patched answer: the one model's
/// check (tests/model/spec.rs), and the situations it exercised.
fn check_patched_pod(built: &Built, patched: &Value, cov: &Coverage) -> Result<(), TestCaseError> {
    spec::check_patched_pod(&built.pod, patched, &built.expected).map_err(fail)?;
    for list in ["initContainers", "containers"] {
        for c in array(&built.pod["spec"], list) {
            if !built
                .expected
                .targets(c["name"].as_str().unwrap_or_default())
            {
                cov.hit("untargeted container");
                continue;
            }
            cov.hit("targeted container");
            if array(c, "env").iter().any(|e| e["name"] == ENV_GOOGLE) {
                cov.hit("own google credentials kept");
            } else if built.expected.gcs_key.is_some() {
                cov.hit("google credentials set");
            }
        }
    }
    Ok(())
}

fn count_coverage(built: &Built, plan: &PodPlan, cov: &Coverage) {
    cov.hit("patched");
    if built.selected().any(|s| s.kind == Kind::Gcs) {
        cov.hit("gcs selected");
    }
    if built.selected().any(|s| s.kind == Kind::S3) {
        cov.hit("s3 selected");
    }
    if built.selected().any(|s| s.kind == Kind::Azure) {
        cov.hit("azure selected");
    }
    if built.selected().any(|s| s.kind == Kind::EmptyDir) {
        cov.hit("emptyDir selected");
    }
    if built.selected().any(|s| s.namespaces.is_some()) {
        cov.hit("namespaced store selected");
    }
    if built.selected().any(|s| s.name.len() > 60) {
        cov.hit("long store name selected");
    }
    match &built.outputs {
        Some(s) if s.kind.provider().is_some() => cov.hit("cloud outputs"),
        Some(_) => cov.hit("volume outputs"),
        None => cov.hit("no outputs"),
    }
    if built.data.is_empty() {
        cov.hit("no data");
    }
    if plan
        .selection
        .as_ref()
        .is_some_and(|s| s.containers.is_some())
    {
        cov.hit("containers subset");
    }
    match &plan.naming {
        Naming::Name(_) => cov.hit("named pod"),
        Naming::Generate(_) => cov.hit("generateName pod"),
        Naming::Neither => cov.hit("unnamed pod"),
    }
    match &plan.owners {
        Owners::Job { .. } => cov.hit("job pod"),
        Owners::NotAJobController(_) => cov.hit("owned, not by a job"),
        Owners::None => {}
    }
    if plan.subpath.is_some() {
        cov.hit("explicit sub-path");
    }
    if plan.stale_injected.is_some() {
        cov.hit("stale injected annotation");
    }
    if plan.annotations.is_none()
        && plan.selection.is_none()
        && plan.subpath.is_none()
        && plan.unique_name.is_none()
        && plan.stale_injected.is_none()
    {
        cov.hit("no annotations map");
    }
    if !plan.init_containers.is_empty() {
        cov.hit("init containers");
    }
}

// ---------------------------------------------------------------------------
// Properties

#[test]
fn config_generator_is_mostly_valid_and_covers_every_store_kind() {
    let mut runner = TestRunner::deterministic();
    let strategy = config_spec();
    let (mut valid, total) = (0, 400);
    let mut seen = BTreeSet::new();
    for _ in 0..total {
        let spec = strategy
            .new_tree(&mut runner)
            .expect("the config strategy never rejects")
            .current();
        if Config::from_yaml(&spec.yaml()).is_ok() {
            valid += 1;
            for s in spec.data.iter().chain(&spec.outputs) {
                seen.insert(format!("{:?}", s.kind));
                if s.namespaces.is_some() {
                    seen.insert("namespaces".into());
                }
            }
            seen.insert(format!("wrapped={} flow={}", spec.wrapped, spec.flow));
        }
    }
    assert!(
        valid * 100 >= total * 75,
        "only {valid} of {total} generated configs are valid"
    );
    for want in [
        "HostPath",
        "Claim",
        "EmptyDir",
        "Gcs",
        "S3",
        "Azure",
        "namespaces",
        "wrapped=true flow=true",
        "wrapped=false flow=false",
    ] {
        assert!(seen.contains(want), "no valid config with {want}: {seen:?}");
    }
}

/// Every SPEC property of the answer to a pod whose selection is valid:
/// the response echoes the request, the patch on the wire is the decided
/// one and serde_json's bytes for its operations, it applies and gives a
/// Pod that the model accepts, dryRun changes nothing, and admitting the
/// patched pod again (reinvocation or replay) gives no patch.
fn check_patched_answer(
    fx: &Fixture,
    plan: &PodPlan,
    built: &Built,
    cov: &Coverage,
) -> Result<(), TestCaseError> {
    prop_assert!(
        serde_json::from_value::<Pod>(built.pod.clone()).is_ok(),
        "generator: the original pod must be a Pod"
    );
    let body = bytes(&review_body(plan, &built.pod, &plan.uid, plan.dry_run));
    let reviewed = review(&fx.config, &body)
        .map_err(|e| fail(format!("a well-formed review was refused: {e}")))?;
    let resp = check_echo(&reviewed.response, plan.api_version, &plan.uid)?;
    let patch = match &reviewed.decision {
        Decision::Patched(p) => p,
        other => {
            return Err(fail(format!(
                "a valid selection must be patched, got {other:?}"
            )))
        }
    };
    let wire = wire_patch(&resp)?;
    prop_assert_eq!(&wire, patch.patch(), "the wire patch is the decided patch");
    // Written as bytes, the patch is exactly what serde_json writes for
    // its operations as values (the builder it replaced): keys sorted,
    // no spaces, the same escapes.
    let canonical = serde_json::to_vec(&wire).map_err(|e| fail(e.to_string()))?;
    prop_assert_eq!(
        String::from_utf8_lossy(patch.as_bytes()),
        String::from_utf8_lossy(&canonical),
        "the patch's bytes are serde_json's for its values"
    );

    let mut patched = built.pod.clone();
    json_patch::patch(&mut patched, &wire)
        .map_err(|e| fail(format!("the patch does not apply: {e}")))?;
    serde_json::from_value::<Pod>(patched.clone())
        .map_err(|e| fail(format!("the patched pod is not a Pod: {e}")))?;
    check_patched_pod(built, &patched, cov)?;

    // dryRun gets exactly the same answer (SPEC §5).
    let flipped = Some(!plan.dry_run.unwrap_or(false));
    let dry = review(
        &fx.config,
        &bytes(&review_body(plan, &built.pod, &plan.uid, flipped)),
    )
    .map_err(|e| fail(format!("dry run refused: {e}")))?;
    prop_assert_eq!(
        &dry.decision,
        &reviewed.decision,
        "dryRun changed the decision"
    );
    prop_assert_eq!(
        &dry.response,
        &reviewed.response,
        "dryRun changed the response"
    );

    // Admitting the patched pod again, as a reinvocation (same uid) or a
    // replay (new uid), changes nothing (SPEC §4, §5).
    for uid in [plan.uid.clone(), format!("{}-replay", plan.uid)] {
        let again = review(
            &fx.config,
            &bytes(&review_body(plan, &patched, &uid, plan.dry_run)),
        )
        .map_err(|e| fail(format!("re-review refused: {e}")))?;
        prop_assert_eq!(
            &again.decision,
            &Decision::Unchanged(Skip::AlreadyInjected),
            "admitting the patched pod again with uid {}",
            uid
        );
        let resp = check_echo(&again.response, plan.api_version, &uid)?;
        check_unchanged_wire(&resp)?;
    }
    Ok(())
}

#[test]
fn valid_selections_are_patched_correctly_and_idempotently() {
    let cov = Coverage::default();
    run((fixture(), pod_plan()), |(fx, plan)| {
        let built = build(&fx, &plan);
        check_patched_answer(&fx, &plan, &built, &cov)?;
        count_coverage(&built, &plan, &cov);
        Ok(())
    });
    cov.require(&[
        "patched",
        "gcs selected",
        "s3 selected",
        "azure selected",
        "emptyDir selected",
        "namespaced store selected",
        "long store name selected",
        "cloud outputs",
        "volume outputs",
        "no outputs",
        "no data",
        "containers subset",
        "named pod",
        "generateName pod",
        "unnamed pod",
        "job pod",
        "owned, not by a job",
        "explicit sub-path",
        "stale injected annotation",
        "no annotations map",
        "init containers",
        "targeted container",
        "untargeted container",
        "google credentials set",
        "own google credentials kept",
    ]);
}

/// Characters a hand-written JSON writer gets wrong: quotes, the
/// backslash, JSON Pointer's `~` and `/`, control characters (C0, DEL,
/// C1), non-ASCII of every UTF-8 length, and the line separators and
/// format characters that JavaScript and people trip on.
const HOSTILE_CHARS: [char; 33] = [
    'a',
    'Z',
    '0',
    '-',
    '.',
    '/',
    '"',
    '\'',
    '~',
    ' ',
    '%',
    '{',
    '<',
    '&',
    ':',
    'é',
    '€',
    '😀',
    '\u{7ff}',
    '\u{10ffff}',
    '\\',
    '\u{0}',
    '\u{1}',
    '\n',
    '\t',
    '\u{7f}',
    '\u{85}',
    '\u{9f}',
    '\u{2028}',
    '\u{2029}',
    '\u{200b}',
    '\u{202e}',
    '\u{feff}',
];

/// The characters of [`HOSTILE_CHARS`] that SPEC §3 forbids in a
/// sub-path: control, invisible or bidirectional-control characters and
/// the backslash.
fn forbidden_in_sub_path(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\\' | '\u{2028}' | '\u{2029}' | '\u{200b}' | '\u{202e}' | '\u{feff}'
        )
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::collection::vec(proptest::sample::select(HOSTILE_CHARS.to_vec()), 0..12)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
        // Only what the webhook must escape, or only what it must not.
        1 => proptest::collection::vec(proptest::sample::select(vec!['"', '\\', '\u{1}', '\u{1f}']), 1..6)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
        1 => proptest::collection::vec(proptest::sample::select(vec!['é', '€', '😀', '~', '"']), 1..6)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
        // Elements at and past the kubelet's 255 bytes.
        1 => (84..=86usize).prop_map(|n| "€".repeat(n)),
        // The most escaping an element allows: each quote is 4 bytes in
        // the patch's annotation (escaped in the annotation's JSON, then
        // in the patch's), which the size estimate must cover.
        1 => (250..=255usize).prop_map(|n| "\"".repeat(n)),
    ]
}

/// Whether SPEC §3 lets `sub_path` be joined to `base`: relative, no
/// empty, `.` or `..` segment, elements of at most 255 bytes, the whole
/// path at most 4,096 bytes, none of the forbidden characters. Written
/// from the SPEC, not from the crate's check.
fn sub_path_allowed(sub_path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    !sub_path.is_empty()
        && !sub_path.starts_with('/')
        && sub_path
            .split('/')
            .all(|s| !matches!(s, "" | "." | "..") && s.len() <= 255)
        && !sub_path.chars().any(forbidden_in_sub_path)
        && base.len() + 1 + sub_path.len() <= 4096
}

/// The hostile parts of a pod: they reach the patch (the outputs path
/// and the recorded annotation, through the sub-path rules), the response
/// (the uid) or only the decision (container names).
#[derive(Debug, Clone)]
struct HostilePlan {
    container_base: String,
    uid: String,
    subpath: Option<String>,
    naming: Option<Naming>,
    /// Which absent maps and lists are sent as `null` (or `[]`), as a
    /// YAML manifest's `env:` with nothing after it reads: see
    /// [`null_absent_fields`].
    nulls: u8,
}

fn hostile_plan() -> impl Strategy<Value = HostilePlan> {
    (
        hostile_text(),
        hostile_text(),
        proptest::option::weighted(0.4, hostile_text()),
        proptest::option::weighted(
            0.5,
            // An empty name is no name (the API server leaves it out).
            prop_oneof![
                hostile_text()
                    .prop_filter("a name", |n| !n.is_empty())
                    .prop_map(Naming::Name),
                hostile_text().prop_map(Naming::Generate),
            ],
        ),
        any::<u8>(),
    )
        .prop_map(
            |(container_base, uid, subpath, naming, nulls)| HostilePlan {
                container_base,
                uid,
                subpath,
                naming,
                nulls,
            },
        )
}

/// Sends absent maps and lists as `null` (the patch must then add them
/// whole, as for absent ones), per bit of `nulls`: `metadata.annotations`, `spec.volumes`, `spec.initContainers` (or as
/// `[]`), and each container's `env` and `volumeMounts`. Returns what it
/// did, for coverage.
fn null_absent_fields(pod: &mut Value, nulls: u8) -> Vec<&'static str> {
    let mut done = Vec::new();
    let bit = |i: u8| nulls & (1 << i) != 0;
    let mut set = |parent: &mut Value, key: &str, value: Value, what: &'static str| {
        if let Some(m) = parent.as_object_mut() {
            if !m.contains_key(key) {
                m.insert(key.to_owned(), value);
                done.push(what);
            }
        }
    };
    if bit(1) {
        set(
            &mut pod["metadata"],
            "annotations",
            Value::Null,
            "null annotations",
        );
    }
    if bit(2) {
        set(&mut pod["spec"], "volumes", Value::Null, "null volumes");
    }
    if bit(3) {
        let (value, what) = if bit(4) {
            (Value::Null, "null initContainers")
        } else {
            (json!([]), "empty initContainers")
        };
        set(&mut pod["spec"], "initContainers", value, what);
    }
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for c in containers {
            if bit(5) {
                set(c, "env", Value::Null, "null env");
            }
            if bit(6) {
                set(c, "volumeMounts", Value::Null, "null volumeMounts");
            }
        }
    }
    done
}

/// SPEC §5 with hostile strings: every answer is valid JSON that echoes
/// the uid exactly; a pod whose strings make an allowed sub-path gets a
/// patch that is serde_json's bytes, applies, gives what the model says
/// and is idempotent; any other is denied naming the sub-path. The
/// strings go through the pod's JSON as the API server would encode them.
#[test]
fn hostile_strings_are_escaped_and_the_patch_still_applies() {
    let cov = Coverage::default();
    run(
        (fixture(), pod_plan(), hostile_plan()),
        |(fx, mut plan, hostile)| {
            plan.base = hostile.container_base;
            plan.uid = hostile.uid;
            if hostile.subpath.is_some() {
                plan.subpath = hostile.subpath;
            }
            if let Some(naming) = hostile.naming {
                plan.naming = naming;
            }
            if let Some(sel) = &mut plan.selection {
                // JSON, whatever the names hold (YAML reads some of these
                // characters as line breaks or refuses them).
                sel.format = Format::Json;
            }
            let mut built = build(&fx, &plan);
            for what in null_absent_fields(&mut built.pod, hostile.nulls) {
                cov.hit(what);
            }
            let sub_path = spec::sub_path(
                &built.pod["metadata"]["annotations"],
                plan.namespace,
                &built.pod["metadata"],
                &plan.uid,
            );
            let allowed = match (&built.outputs, &sub_path) {
                (None, _) => true,
                (Some(store), Some(sub)) => {
                    let base = match store.kind.provider() {
                        Some(_) => store.bucket(),
                        None => store.mount_path(),
                    };
                    sub_path_allowed(sub, &base)
                }
                (Some(_), None) => false,
            };
            if allowed {
                check_patched_answer(&fx, &plan, &built, &cov)?;
                cov.hit("patched");
                if let (Some(_), Some(sub)) = (&built.outputs, &sub_path) {
                    if sub.contains('"') {
                        cov.hit("quote in the outputs path");
                    }
                    if !sub.is_ascii() {
                        cov.hit("non-ASCII outputs path");
                    }
                    if sub.contains('~') {
                        cov.hit("tilde in the outputs path");
                    }
                }
                if plan.uid.chars().any(char::is_control) {
                    cov.hit("control character in the uid");
                }
                return Ok(());
            }
            let body = bytes(&review_body(&plan, &built.pod, &plan.uid, plan.dry_run));
            let reviewed = review(&fx.config, &body)
                .map_err(|e| fail(format!("a well-formed review was refused: {e}")))?;
            let resp = check_echo(&reviewed.response, plan.api_version, &plan.uid)?;
            prop_assert!(
                matches!(reviewed.decision, Decision::Denied(_)),
                "sub-path {:?} must be denied, got {:?}",
                sub_path,
                reviewed.decision
            );
            prop_assert_eq!(
                &resp["response"]["status"]["details"]["causes"][0]["reason"],
                &json!("bad-subpath"),
                "{}",
                resp
            );
            prop_assert!(resp["response"].get("patch").is_none(), "{}", resp);
            cov.hit("denied over the sub-path");
            Ok(())
        },
    );
    cov.require(&[
        "patched",
        "denied over the sub-path",
        "quote in the outputs path",
        "non-ASCII outputs path",
        "tilde in the outputs path",
        "control character in the uid",
        "null annotations",
        "null volumes",
        "null initContainers",
        "empty initContainers",
        "null env",
        "null volumeMounts",
    ]);
}

#[derive(Debug, Clone)]
enum NotMutated {
    Kind(Value),
    SubResource(&'static str),
    Operation(&'static str),
}

#[test]
fn a_review_written_any_way_gets_the_same_answer() {
    // The API server's encoder escapes `<`, `>`, `&` and U+2028 as
    // `\u003c`...; other senders order keys and space tokens as they
    // like. With `object` before `kind` and `operation` the pod is read
    // from its raw text, after them as the review is read: both here.
    run(
        (fixture(), pod_plan(), writer::style()),
        |(fx, plan, style)| {
            let built = build(&fx, &plan);
            let mut pod = built.pod.clone();
            // The pod, then the pod as patched (re-admitted: our mounts,
            // volumes and env vars are there to be read).
            for _ in 0..2 {
                let body = review_body(&plan, &pod, &plan.uid, plan.dry_run);
                let plain = review(&fx.config, &bytes(&body))
                    .map_err(|e| fail(format!("a well-formed review was refused: {e}")))?;
                let text = writer::write(&body, style);
                let written = review(&fx.config, text.as_bytes())
                    .map_err(|e| fail(format!("refused as written: {e}\n{text}")))?;
                prop_assert_eq!(&written.decision, &plain.decision, "{}", text);
                prop_assert_eq!(
                    String::from_utf8_lossy(&written.response),
                    String::from_utf8_lossy(&plain.response),
                    "{}",
                    text
                );
                let Decision::Patched(patch) = &plain.decision else {
                    break;
                };
                json_patch::patch(&mut pod, patch.patch())
                    .map_err(|e| fail(format!("the patch does not apply: {e}")))?;
            }
            Ok(())
        },
    );
}

#[test]
fn other_kinds_and_operations_are_unchanged() {
    let variant = prop_oneof![
        Just(NotMutated::Kind(
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        )),
        Just(NotMutated::Kind(
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        )),
        Just(NotMutated::Kind(
            json!({"group": "example.com", "version": "v1", "kind": "Pod"})
        )),
        Just(NotMutated::SubResource("status")),
        Just(NotMutated::SubResource("ephemeralcontainers")),
        Just(NotMutated::Operation("UPDATE")),
        Just(NotMutated::Operation("DELETE")),
        Just(NotMutated::Operation("CONNECT")),
    ];
    run((fixture(), pod_plan(), variant), |(fx, plan, variant)| {
        let built = build(&fx, &plan);
        let mut body = review_body(&plan, &built.pod, &plan.uid, plan.dry_run);
        let want = match &variant {
            NotMutated::Kind(k) => {
                body["request"]["kind"] = k.clone();
                Skip::NotPod
            }
            NotMutated::SubResource(s) => {
                body["request"]["subResource"] = json!(s);
                Skip::NotPod
            }
            NotMutated::Operation(op) => {
                body["request"]["operation"] = json!(op);
                body["request"]["oldObject"] = built.pod.clone();
                Skip::NotCreate
            }
        };
        let reviewed =
            review(&fx.config, &bytes(&body)).map_err(|e| fail(format!("refused: {e}")))?;
        prop_assert_eq!(&reviewed.decision, &Decision::Unchanged(want));
        let resp = check_echo(&reviewed.response, plan.api_version, &plan.uid)?;
        check_unchanged_wire(&resp)
    });
}

#[test]
fn opted_out_pods_are_unchanged_whatever_they_select() {
    let garbage = proptest::option::of(proptest::sample::select(vec![
        "data: [",
        "outputs: [a, b]",
        "nope: 1",
        "data: [no-such-store]",
    ]));
    run((fixture(), pod_plan(), garbage), |(fx, plan, garbage)| {
        let built = build(&fx, &plan);
        let mut pod = built.pod;
        let meta = pod
            .as_object_mut()
            .expect("a pod is an object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        let labels = meta
            .as_object_mut()
            .expect("metadata is an object")
            .entry("labels")
            .or_insert_with(|| json!({}));
        labels[LABEL_INJECTION] = json!("disabled");
        if let Some(g) = garbage {
            meta.as_object_mut()
                .expect("metadata is an object")
                .entry("annotations")
                .or_insert_with(|| json!({}))[ANN_PERSISTENCE] = json!(g);
        }
        let reviewed = review(
            &fx.config,
            &bytes(&review_body(&plan, &pod, &plan.uid, plan.dry_run)),
        )
        .map_err(|e| fail(format!("refused: {e}")))?;
        prop_assert_eq!(&reviewed.decision, &Decision::Unchanged(Skip::OptedOut));
        let resp = check_echo(&reviewed.response, plan.api_version, &plan.uid)?;
        check_unchanged_wire(&resp)
    });
}

/// Whatever `review` returns for a body, the answer is consistent: an
/// AdmissionReview echoing the uid it reports, with a patch only when
/// allowed and patched.
fn check_any_answer(config: &Config, body: &[u8]) -> Result<Option<Decision>, TestCaseError> {
    match review(config, body) {
        // The error names the right problem: "not JSON" only for a body
        // that is not JSON, an unsupported version only when it is not one
        // of the two.
        Err(e) => {
            let json = serde_json::from_slice::<Value>(body);
            match &e {
                ReviewError::NotJson { .. } => {
                    prop_assert!(json.is_err(), "{} for JSON", e);
                }
                // A type error can come before a syntax error: either body.
                ReviewError::NotReview { .. } => {}
                ReviewError::Version(v) => {
                    prop_assert!(
                        !["admission.k8s.io/v1", "admission.k8s.io/v1beta1"].contains(&v.as_str()),
                        "{} for a supported version",
                        e
                    );
                }
            }
            Ok(None)
        }
        Ok(reviewed) => {
            let resp: Value = serde_json::from_slice(&reviewed.response)
                .map_err(|e| fail(format!("the response is not JSON: {e}")))?;
            prop_assert_eq!(&resp["kind"], &json!("AdmissionReview"));
            prop_assert_eq!(&resp["response"]["uid"], &json!(reviewed.subject.uid));
            let allowed = matches!(
                reviewed.decision,
                Decision::Unchanged(_) | Decision::Patched(_)
            );
            prop_assert_eq!(&resp["response"]["allowed"], &json!(allowed));
            prop_assert_eq!(
                resp["response"].get("patch").is_some(),
                matches!(reviewed.decision, Decision::Patched(_))
            );
            if !allowed {
                let message = resp["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default();
                prop_assert!(!message.is_empty(), "a refusal says why: {}", resp);
            }
            Ok(Some(reviewed.decision))
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let config = Config::example();
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        // JSON-looking text reaches past the syntax check more often.
        "[{}\\[\\]\":,a-z0-9 ]{0,64}".prop_map(String::into_bytes),
        "\\{\"apiVersion\":\"admission.k8s.io/v1\",\"request\":\\{\"uid\":\"u\"[{}\\[\\]\":,a-z0-9 ]{0,48}"
            .prop_map(String::into_bytes),
    ];
    run(body, |body| check_any_answer(&config, &body).map(drop));
}

#[derive(Debug, Clone)]
enum ByteEdit {
    Flip(Index, u8),
    Delete(Index),
    Insert(Index, u8),
    Truncate(Index),
}

#[test]
fn mutated_bodies_never_panic() {
    let edit = prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(i, b)| ByteEdit::Flip(i, b)),
        any::<Index>().prop_map(ByteEdit::Delete),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Truncate),
    ];
    let edits = proptest::collection::vec(edit, 1..4);
    run((fixture(), pod_plan(), edits), |(fx, plan, edits)| {
        let built = build(&fx, &plan);
        let mut body = bytes(&review_body(&plan, &built.pod, &plan.uid, plan.dry_run));
        for e in &edits {
            if body.is_empty() {
                break;
            }
            match e {
                ByteEdit::Flip(i, bit) => {
                    let i = i.index(body.len());
                    body[i] ^= 1 << bit;
                }
                ByteEdit::Delete(i) => {
                    body.remove(i.index(body.len()));
                }
                ByteEdit::Insert(i, b) => body.insert(i.index(body.len()), *b),
                ByteEdit::Truncate(i) => body.truncate(i.index(body.len())),
            }
        }
        check_any_answer(&fx.config, &body).map(drop)
    });
}

/// Every node of a JSON document, as a path of tokens.
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(k.clone());
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(i.to_string());
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'v>(v: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |node, token| match node {
        Value::Object(m) => m.get_mut(token),
        Value::Array(a) => a.get_mut(token.parse::<usize>().ok()?),
        _ => None,
    })
}

#[test]
fn structurally_mutated_reviews_are_answered_consistently() {
    // Replace (or, for `None`, delete) one node anywhere in a valid review:
    // wrong types, nulls, empty strings, missing fields.
    let replacement = proptest::option::weighted(
        0.85,
        proptest::sample::select(vec![
            Value::Null,
            json!(true),
            json!(0),
            json!(-1.5),
            json!(""),
            json!("x"),
            json!("/"),
            json!([]),
            json!({}),
            json!([null]),
            json!({"name": 1}),
            json!({"name": "n", "mountPath": "/data"}),
            json!("data: []"),
        ]),
    );
    let cov = Coverage::default();
    run(
        (fixture(), pod_plan(), any::<Index>(), replacement),
        |(fx, plan, at, replacement)| {
            let built = build(&fx, &plan);
            let mut body = review_body(&plan, &built.pod, &plan.uid, plan.dry_run);
            let mut all = Vec::new();
            paths(&body, &mut Vec::new(), &mut all);
            let path = &all[at.index(all.len())];
            let (last, parent) = path.split_last().expect("paths are never empty");
            match (node_mut(&mut body, parent), replacement) {
                (Some(Value::Object(m)), None) => {
                    m.remove(last);
                }
                (Some(Value::Array(a)), None) => {
                    a.remove(last.parse::<usize>().expect("an array index"));
                }
                (Some(p), Some(r)) => {
                    let node = node_mut(p, std::slice::from_ref(last)).expect("the node exists");
                    *node = r;
                }
                (_, None) => return Err(fail("generator: no parent")),
                (None, _) => return Err(fail("generator: no parent")),
            }
            let raw = bytes(&body);
            let Some(decision) = check_any_answer(&fx.config, &raw)? else {
                return Ok(());
            };
            let Decision::Patched(patch) = decision else {
                cov.hit("not patched");
                return Ok(());
            };
            // Whatever the pod looked like, an allowed patch applies to it
            // and admitting the result again changes nothing.
            cov.hit("patched");
            let mut pod = body["request"]["object"].clone();
            json_patch::patch(&mut pod, patch.patch())
                .map_err(|e| fail(format!("the patch does not apply to the mutated pod: {e}")))?;
            body["request"]["object"] = pod;
            let again = review(&fx.config, &bytes(&body))
                .map_err(|e| fail(format!("re-review refused: {e}")))?;
            prop_assert!(
                matches!(again.decision, Decision::Unchanged(_)),
                "admitting the patched, mutated pod again: {:?}",
                again.decision
            );
            Ok(())
        },
    );
    cov.require(&["patched", "not patched"]);
}

/// Regression: serde's derived `Deserialize` for a struct also accepts a JSON
/// *array* (fields by position), so a pod, its `metadata`, its `spec` or a
/// container sent as a list was read as an empty struct and answered
/// `Patched` with a patch that cannot apply. Found by
/// `structurally_mutated_reviews_are_answered_consistently`; such a request
/// is now `Invalid`.
#[test]
fn maps_sent_as_lists_are_not_patched() {
    let config = Config::from_yaml("data: {}\noutputs: {}").expect("valid config");
    for object in [
        json!([]),
        json!({"metadata": [], "spec": {"containers": [{"name": "c"}]}}),
        json!({"metadata": {"name": "p"}, "spec": []}),
        json!({"metadata": {"name": "p"}, "spec": {"containers": [[]]}}),
    ] {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": "default", "operation": "CREATE", "object": object}});
        let reviewed = review(&config, &bytes(&body)).expect("answered");
        assert!(
            matches!(reviewed.decision, Decision::Invalid(_)),
            "object {object}: {:?}",
            reviewed.decision
        );
    }
}

#[derive(Debug, Clone)]
enum BadSelection {
    UnknownData,
    UnknownOutputs,
    OutputsList,
    UnknownKey,
    Unparseable,
    NotAvailable,
    UnknownContainer,
}

#[test]
fn invalid_selections_are_denied_naming_the_annotation_and_the_stores() {
    let bad = prop_oneof![
        Just(BadSelection::UnknownData),
        Just(BadSelection::UnknownOutputs),
        Just(BadSelection::OutputsList),
        Just(BadSelection::UnknownKey),
        Just(BadSelection::Unparseable),
        Just(BadSelection::NotAvailable),
        Just(BadSelection::UnknownContainer),
    ];
    run((fixture(), pod_plan(), bad), |(fx, plan, bad)| {
        let ns = plan.namespace;
        let elsewhere = fx
            .spec
            .data
            .iter()
            .chain(&fx.spec.outputs)
            .find(|s| !s.available_in(ns));
        let text = match (&bad, elsewhere) {
            (BadSelection::UnknownData, _) => "data: [no-such-store-zz]".to_owned(),
            (BadSelection::UnknownOutputs, _) => "outputs: no-such-store-zz".to_owned(),
            (BadSelection::OutputsList, _) => "outputs: [a, b]".to_owned(),
            (BadSelection::UnknownKey, _) => "output: a".to_owned(),
            (BadSelection::Unparseable, _) => "data: [a".to_owned(),
            (BadSelection::NotAvailable, Some(s)) => {
                let key = if s.outputs { "outputs" } else { "data" };
                let name = Value::from(s.name.as_str());
                if s.outputs {
                    format!("{{\"{key}\": {name}}}")
                } else {
                    format!("{{\"{key}\": [{name}]}}")
                }
            }
            (BadSelection::NotAvailable, None) => "data: [no-such-store-zz]".to_owned(),
            (BadSelection::UnknownContainer, _) => "containers: [no-such-container]".to_owned(),
        };
        let mut pod = build(&fx, &plan).pod;
        let meta = pod
            .as_object_mut()
            .expect("a pod is an object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        meta.as_object_mut()
            .expect("metadata is an object")
            .entry("annotations")
            .or_insert_with(|| json!({}))[ANN_PERSISTENCE] = json!(text);
        let body = bytes(&review_body(&plan, &pod, &plan.uid, plan.dry_run));
        let reviewed = review(&fx.config, &body).map_err(|e| fail(format!("refused: {e}")))?;
        let Decision::Denied(denial) = &reviewed.decision else {
            return Err(fail(format!(
                "{text:?} must be denied, got {:?}",
                reviewed.decision
            )));
        };
        let message = &denial.to_string();
        prop_assert!(message.contains(ANN_PERSISTENCE), "{}", message);
        if !matches!(bad, BadSelection::UnknownContainer) {
            // SPEC §3: the message lists the stores the namespace may use.
            for s in fx
                .spec
                .available(false, ns)
                .into_iter()
                .chain(fx.spec.available(true, ns))
            {
                prop_assert!(
                    message.contains(&s.name),
                    "{:?} not listed in {}",
                    s.name,
                    message
                );
            }
        }
        let resp = check_echo(&reviewed.response, plan.api_version, &plan.uid)?;
        prop_assert_eq!(&resp["response"]["allowed"], &json!(false));
        prop_assert_eq!(&resp["response"]["status"]["message"], &json!(message));
        Ok(())
    });
}

#[test]
fn a_conflicting_mount_or_env_var_is_denied_naming_the_container() {
    run(
        (
            fixture(),
            pod_plan(),
            any::<Index>(),
            any::<bool>(),
            any::<bool>(),
        ),
        |(fx, plan, which, prefer_mount, trailing_slash)| {
            let built = build(&fx, &plan);
            let mut pod = built.pod;
            let targeted: Vec<(String, usize, String)> = ["initContainers", "containers"]
                .into_iter()
                .flat_map(|list| {
                    array(&pod["spec"], list)
                        .iter()
                        .enumerate()
                        .map(move |(i, c)| {
                            (
                                list.to_owned(),
                                i,
                                c["name"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|(_, _, name)| built.expected.targets(name))
                .collect();
            let (list, i, name) = &targeted[which.index(targeted.len())];
            let mounts: Vec<&str> = built
                .expected
                .mounts
                .iter()
                .map(|m| m.path.as_str())
                .collect();
            let container = pod["spec"][list.as_str()][*i]
                .as_object_mut()
                .expect("a container is an object");
            let conflict = if prefer_mount && !mounts.is_empty() {
                let mut path = mounts[which.index(mounts.len())].to_owned();
                if trailing_slash {
                    path.push('/');
                }
                let list = container.entry("volumeMounts").or_insert_with(|| json!([]));
                list.as_array_mut()
                    .expect("volumeMounts is a list")
                    .push(json!({"name": "own-0", "mountPath": path}));
                path.trim_end_matches('/').to_owned()
            } else {
                let list = container.entry("env").or_insert_with(|| json!([]));
                list.as_array_mut()
                    .expect("env is a list")
                    .push(json!({"name": ENV_DATA_PATHS, "value": "{\"elsewhere\":\"/x\"}"}));
                ENV_DATA_PATHS.to_owned()
            };
            let body = bytes(&review_body(&plan, &pod, &plan.uid, plan.dry_run));
            let reviewed = review(&fx.config, &body).map_err(|e| fail(format!("refused: {e}")))?;
            let Decision::Denied(denial) = &reviewed.decision else {
                return Err(fail(format!(
                    "a conflict at {conflict} in {name} must be denied, got {:?}",
                    reviewed.decision
                )));
            };
            let message = &denial.to_string();
            prop_assert!(
                message.contains(name.as_str()),
                "container not named: {}",
                message
            );
            prop_assert!(
                message.contains(&conflict),
                "conflict not named: {}",
                message
            );
            let resp = check_echo(&reviewed.response, plan.api_version, &plan.uid)?;
            prop_assert_eq!(&resp["response"]["allowed"], &json!(false));
            Ok(())
        },
    );
}
