//! The operator's persistence config (SPEC §2): the raw serde model of the
//! file and its validation into a [`Config`] whose invariants the rest of the
//! crate relies on. Pure: it takes text, never opens files.
//!
//! Every rule is checked at load and every problem found is reported, each
//! naming the store and the field, so one edit fixes the whole file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::k8s;
use crate::names;
use crate::vocabulary::RESERVED_ENV;

/// The example config shipped with the crate: every store kind, used by the
/// README's first command and by the server's try-it mode.
pub const EXAMPLE_YAML: &str = include_str!("../../examples/persistence.yaml");

/// Why a config file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not YAML at all (the message carries line and column).
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// The YAML parsed but breaks one or more rules; every problem is listed.
    #[error("{}", Problems(.0))]
    Invalid(Vec<String>),
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}:", if n == 1 { "" } else { "s" })?;
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Which section a store was declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `persistence.data`: read by runs, all of them by default.
    Data,
    /// `persistence.outputs`: one per run, written under a per-run sub-path.
    Outputs,
}

impl Role {
    /// The section's key in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::Outputs => "outputs",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A bucket store's provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    /// Google Cloud Storage, `gs://bucket/...`.
    Gcs,
    /// Amazon S3, `s3://bucket/...`.
    S3,
    /// Azure Blob Storage, `wasbs://container@account.blob.core.windows.net/...`.
    Azure,
}

impl Provider {
    /// The name used in the config's `store` field and in the access-keys env var.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Gcs => "gcs",
            Provider::S3 => "s3",
            Provider::Azure => "azure",
        }
    }

    fn scheme_hint(self) -> &'static str {
        match self {
            Provider::Gcs => "gs://<bucket>",
            Provider::S3 => "s3://<bucket>",
            Provider::Azure => "wasbs://<container>@<account>.blob.core.windows.net/",
        }
    }

    fn parse(s: &str) -> Option<Provider> {
        match s {
            "gcs" => Some(Provider::Gcs),
            "s3" => Some(Provider::S3),
            "azure" => Some(Provider::Azure),
            _ => None,
        }
    }

    /// Whether `bucket` is a well-formed URL for this provider.
    fn accepts(self, bucket: &str) -> bool {
        let non_empty_head = |rest: &str| rest.split('/').next().is_some_and(|b| !b.is_empty());
        match self {
            Provider::Gcs => bucket.strip_prefix("gs://").is_some_and(non_empty_head),
            Provider::S3 => bucket.strip_prefix("s3://").is_some_and(non_empty_head),
            Provider::Azure => bucket.strip_prefix("wasbs://").is_some_and(|rest| {
                let host = rest.split('/').next().unwrap_or("");
                match host.split_once('@') {
                    Some((container, account_host)) => {
                        !container.is_empty()
                            && account_host
                                .strip_suffix(".blob.core.windows.net")
                                .is_some_and(|account| !account.is_empty())
                    }
                    None => false,
                }
            }),
        }
    }
}

/// Where a volume store's pod volume comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `hostPath`: a directory on the node.
    HostPath(String),
    /// `existingClaim`: a PersistentVolumeClaim in the pod's namespace.
    Claim(String),
    /// Only `mountPath`: an `emptyDir`, scratch space for the pod's lifetime.
    EmptyDir,
}

impl Source {
    /// The Kubernetes volume source; `read_only` opens a claim read-only.
    pub fn k8s(&self, read_only: bool) -> k8s::VolumeSource<'_> {
        match self {
            Source::HostPath(path) => k8s::VolumeSource::HostPath(path),
            Source::Claim(claim) => k8s::VolumeSource::Claim { claim, read_only },
            Source::EmptyDir => k8s::VolumeSource::EmptyDir,
        }
    }
}

/// What backs a store.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// A pod volume mounted at `mount_path`.
    Volume {
        /// Absolute, normalised (no trailing `/`).
        mount_path: String,
        /// The volume's source.
        source: Source,
        /// Mounted read-only (and the claim opened read-only).
        read_only: bool,
        /// The pod volume to add, built once at load.
        volume: Value,
    },
    /// A bucket reached through credentials in a Secret.
    Cloud {
        /// gcs, s3 or azure.
        provider: Provider,
        /// The bucket URL, used verbatim.
        bucket: String,
        /// The Secret holding the credentials.
        secret: String,
        /// The key in that Secret, and the name of the env var that references it.
        secret_key: String,
    },
}

/// One validated store.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    name: String,
    role: Role,
    backend: Backend,
    namespaces: Option<BTreeSet<String>>,
    volume_name: String,
    isolate_namespaces: bool,
}

impl Store {
    /// The store's name (a DNS-1123 label, unique across data and outputs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The section it was declared in.
    pub fn role(&self) -> Role {
        self.role
    }

    /// What backs it.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The mount path of a volume store, or the bucket URL of a cloud store.
    pub fn path(&self) -> &str {
        match &self.backend {
            Backend::Volume { mount_path, .. } => mount_path,
            Backend::Cloud { bucket, .. } => bucket,
        }
    }

    /// The deterministic pod volume name used for a volume store.
    pub fn volume_name(&self) -> &str {
        &self.volume_name
    }

    /// Whether every run's sub-path in this outputs store goes under
    /// `<namespace>/` (`isolateNamespaces: true`, SPEC §3).
    pub fn isolates_namespaces(&self) -> bool {
        self.isolate_namespaces
    }

    /// Whether pods in `namespace` may use this store.
    pub fn available_in(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|allowed| allowed.contains(namespace))
    }
}

/// A validated persistence config. Construct with [`Config::from_yaml`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    data: BTreeMap<String, Store>,
    outputs: BTreeMap<String, Store>,
    default_outputs: Option<String>,
    data_index: Availability,
    outputs_index: Availability,
}

/// Which stores of a role each namespace may use, so that a review walks
/// only the stores its namespace may use, never the whole config (a config
/// can hold thousands of stores, most of them for other teams).
#[derive(Debug, Clone, Default, PartialEq)]
struct Availability {
    /// Stores without `namespaces`, in name order.
    everywhere: Vec<String>,
    /// namespace -> the stores limited to it, in name order.
    scoped: std::collections::HashMap<String, Vec<String>>,
}

impl Availability {
    fn new(stores: &BTreeMap<String, Store>) -> Availability {
        let mut index = Availability::default();
        // BTreeMap order: every list is built sorted.
        for (name, store) in stores {
            match &store.namespaces {
                None => index.everywhere.push(name.clone()),
                Some(namespaces) => {
                    for ns in namespaces {
                        index
                            .scoped
                            .entry(ns.clone())
                            .or_default()
                            .push(name.clone());
                    }
                }
            }
        }
        index
    }

    fn scoped(&self, namespace: &str) -> &[String] {
        self.scoped.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// The names available to `namespace`, merged in name order.
    fn names<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a str> + 'a {
        let mut open = self.everywhere.iter().peekable();
        let mut scoped = self.scoped(namespace).iter().peekable();
        std::iter::from_fn(move || match (open.peek(), scoped.peek()) {
            (Some(a), Some(b)) if b < a => scoped.next().map(String::as_str),
            (Some(_), _) => open.next().map(String::as_str),
            (None, _) => scoped.next().map(String::as_str),
        })
    }

    fn count(&self, namespace: &str) -> usize {
        self.everywhere.len() + self.scoped(namespace).len()
    }
}

impl Config {
    /// Parses and validates the operator's file, with or without the
    /// top-level `persistence:` key.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        Validator::default().run(doc)
    }

    /// The built-in example config ([`EXAMPLE_YAML`]).
    pub fn example() -> Config {
        Config::from_yaml(EXAMPLE_YAML).expect("the bundled example config is valid")
    }

    /// A store by name, whichever its role.
    pub fn store(&self, name: &str) -> Option<&Store> {
        self.data.get(name).or_else(|| self.outputs.get(name))
    }

    /// The stores of a role, by name.
    pub fn stores(&self, role: Role) -> &BTreeMap<String, Store> {
        match role {
            Role::Data => &self.data,
            Role::Outputs => &self.outputs,
        }
    }

    fn index(&self, role: Role) -> &Availability {
        match role {
            Role::Data => &self.data_index,
            Role::Outputs => &self.outputs_index,
        }
    }

    /// Stores of a role that pods in `namespace` may use, in name order.
    /// Costs what it yields (plus a lookup each), whatever the config's size.
    pub fn available<'a>(
        &'a self,
        role: Role,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Store> + 'a {
        let stores = self.stores(role);
        self.index(role)
            .names(namespace)
            .filter_map(move |name| stores.get(name))
    }

    /// How many stores of a role pods in `namespace` may use, without
    /// walking them.
    pub fn available_count(&self, role: Role, namespace: &str) -> usize {
        self.index(role).count(namespace)
    }

    /// The outputs store a pod gets when it names none: `defaultOutputs` if
    /// available to the namespace, else the first available by name.
    pub fn default_outputs(&self, namespace: &str) -> Option<&Store> {
        self.default_outputs
            .as_deref()
            .and_then(|name| self.outputs.get(name))
            .filter(|s| s.available_in(namespace))
            .or_else(|| self.available(Role::Outputs, namespace).next())
    }
}

/// One store as written in the file. Every field optional so that a missing
/// one is reported by name, with the others, instead of failing the parse.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStore {
    mount_path: Option<String>,
    host_path: Option<String>,
    existing_claim: Option<String>,
    read_only: Option<bool>,
    store: Option<String>,
    bucket: Option<String>,
    secret: Option<String>,
    secret_key: Option<String>,
    namespaces: Option<Vec<String>>,
    isolate_namespaces: Option<bool>,
}

#[derive(Default)]
struct Validator {
    problems: Vec<String>,
    data: BTreeMap<String, Store>,
    outputs: BTreeMap<String, Store>,
    /// mount path -> store that claimed it
    mount_paths: BTreeMap<String, String>,
    /// secretKey -> (secret, store)
    secret_keys: BTreeMap<String, (String, String)>,
    /// data bucket -> store
    data_buckets: BTreeMap<String, String>,
    /// volume name -> store
    volume_names: BTreeMap<String, String>,
    /// every store name seen, valid or not
    names: BTreeSet<String>,
}

const TOP_KEYS: &str = "data, outputs, defaultOutputs";

impl Validator {
    fn run(mut self, doc: serde_yaml::Value) -> Result<Config, ConfigError> {
        let mut top = match doc {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => {
                return Err(ConfigError::Invalid(vec![
                    "the file is empty: expected a mapping with data and outputs stores".into(),
                ]))
            }
            other => {
                return Err(ConfigError::Invalid(vec![format!(
                    "the file must be a mapping with {TOP_KEYS} (optionally under persistence:), found {}",
                    yaml_kind(&other)
                )]))
            }
        };
        // A pasted Helm values file: take `persistence:` and ignore its siblings.
        let mut prefix = "";
        if let Some(inner) = top.remove("persistence") {
            prefix = "persistence.";
            top = match inner {
                serde_yaml::Value::Mapping(m) => m,
                serde_yaml::Value::Null => serde_yaml::Mapping::new(),
                other => {
                    return Err(ConfigError::Invalid(vec![format!(
                        "persistence: expected a mapping with {TOP_KEYS}, found {}",
                        yaml_kind(&other)
                    )]))
                }
            };
        }
        let mut default_outputs = None;
        let mut sections: Vec<(Role, serde_yaml::Value)> = Vec::new();
        for (key, value) in top {
            match key.as_str() {
                Some("data") => sections.push((Role::Data, value)),
                Some("outputs") => sections.push((Role::Outputs, value)),
                Some("defaultOutputs") => match value {
                    serde_yaml::Value::String(s) => default_outputs = Some(s),
                    serde_yaml::Value::Null => {}
                    other => self.problems.push(format!(
                        "{prefix}defaultOutputs: expected an outputs store name, found {}",
                        yaml_kind(&other)
                    )),
                },
                _ => self.problems.push(format!(
                    "{prefix}{}: unknown key (expected {TOP_KEYS})",
                    yaml_key(&key)
                )),
            }
        }
        for (role, section) in sections {
            self.section(role, section);
        }
        if let Some(name) = &default_outputs {
            if !self.outputs.contains_key(name) {
                self.problems.push(format!(
                    "{prefix}defaultOutputs: {name:?} is not an outputs store (outputs stores: {})",
                    list_or_none(self.outputs.keys())
                ));
            }
        }
        if self.problems.is_empty() {
            Ok(Config {
                data_index: Availability::new(&self.data),
                outputs_index: Availability::new(&self.outputs),
                data: self.data,
                outputs: self.outputs,
                default_outputs,
            })
        } else {
            Err(ConfigError::Invalid(self.problems))
        }
    }

    fn section(&mut self, role: Role, section: serde_yaml::Value) {
        let entries = match section {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => return,
            other => {
                self.problems.push(format!(
                    "{role}: expected a mapping of store name to store, found {}",
                    yaml_kind(&other)
                ));
                return;
            }
        };
        for (key, value) in entries {
            let Some(name) = key.as_str().map(str::to_owned) else {
                self.problems.push(format!(
                    "{role}: store name {} is not a string",
                    yaml_key(&key)
                ));
                continue;
            };
            let at = format!("{role}.{name}");
            let raw: RawStore = match value {
                // `name:` with nothing after it: report the missing fields below.
                serde_yaml::Value::Null => RawStore::default(),
                value => match serde_path_to_error::deserialize(value) {
                    Ok(raw) => raw,
                    Err(e) => {
                        let path = e.path().to_string();
                        let at = if path == "." {
                            at
                        } else {
                            format!("{at}.{path}")
                        };
                        // serde names the Rust type; say what the file needs.
                        let why = e.inner().to_string().replace(
                            "struct RawStore",
                            "a mapping of store fields (mountPath, or store, bucket, secret and secretKey)",
                        );
                        self.problems.push(format!("{at}: {why}"));
                        continue;
                    }
                },
            };
            let before = self.problems.len();
            if !names::is_dns1123_label(&name) {
                self.problems.push(format!(
                    "{at}: the store name must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
                ));
            }
            if !self.names.insert(name.clone()) {
                self.problems.push(format!(
                    "{at}: the name is already used by another store (names are unique across data and outputs)"
                ));
            }
            let store = self.store(role, &name, &at, raw);
            if let Some(store) = store.filter(|_| self.problems.len() == before) {
                match role {
                    Role::Data => self.data.insert(name, store),
                    Role::Outputs => self.outputs.insert(name, store),
                };
            }
        }
    }

    fn store(&mut self, role: Role, name: &str, at: &str, mut raw: RawStore) -> Option<Store> {
        let namespaces = self.namespaces(at, raw.namespaces.take());
        let isolate_namespaces = match (role, raw.isolate_namespaces) {
            (Role::Outputs, isolate) => isolate.unwrap_or(false),
            (Role::Data, None) => false,
            (Role::Data, Some(_)) => {
                self.problems.push(format!(
                    "{at}.isolateNamespaces: only allowed on an outputs store (it puts each run's outputs sub-path under <namespace>/); remove it from this data store"
                ));
                false
            }
        };
        let backend = if let Some(kind) = raw.store.as_deref() {
            self.cloud(role, at, name, kind, &raw)?
        } else {
            self.volume(role, at, name, &raw)?
        };
        let volume_name = names::volume_name(name);
        if matches!(backend, Backend::Volume { .. }) {
            if let Some(other) = self
                .volume_names
                .insert(volume_name.clone(), name.to_owned())
            {
                self.problems.push(format!(
                    "{at}: its pod volume name {volume_name:?} collides with store {other:?}; rename one of them"
                ));
            }
        }
        let backend = match backend {
            Backend::Volume {
                mount_path,
                source,
                read_only,
                ..
            } => {
                let volume = k8s::volume(&volume_name, source.k8s(read_only));
                Backend::Volume {
                    mount_path,
                    source,
                    read_only,
                    volume,
                }
            }
            cloud => cloud,
        };
        Some(Store {
            name: name.to_owned(),
            role,
            backend,
            namespaces,
            volume_name,
            isolate_namespaces,
        })
    }

    fn namespaces(&mut self, at: &str, raw: Option<Vec<String>>) -> Option<BTreeSet<String>> {
        let list = raw?;
        if list.is_empty() {
            self.problems.push(format!(
                "{at}.namespaces: the list is empty, so no pod could use the store; remove the field to allow every namespace"
            ));
        }
        for ns in &list {
            if !names::is_dns1123_label(ns) {
                self.problems.push(format!(
                    "{at}.namespaces: {ns:?} is not a valid namespace name (a DNS-1123 label)"
                ));
            }
        }
        Some(list.into_iter().collect())
    }

    fn cloud(
        &mut self,
        role: Role,
        at: &str,
        name: &str,
        kind: &str,
        raw: &RawStore,
    ) -> Option<Backend> {
        let before = self.problems.len();
        for (field, present) in [
            ("mountPath", raw.mount_path.is_some()),
            ("hostPath", raw.host_path.is_some()),
            ("existingClaim", raw.existing_claim.is_some()),
            ("readOnly", raw.read_only.is_some()),
        ] {
            if present {
                self.problems.push(format!(
                    "{at}.{field}: not allowed on a cloud store (store: {kind}); a bucket store has store, bucket, secret and secretKey"
                ));
            }
        }
        let provider = Provider::parse(kind);
        if provider.is_none() {
            self.problems.push(format!(
                "{at}.store: {kind:?} is not a store kind (expected gcs, s3 or azure)"
            ));
        }
        let bucket = self.required(at, "bucket", &raw.bucket);
        let secret = self.required(at, "secret", &raw.secret);
        let secret_key = self.required(at, "secretKey", &raw.secret_key);
        if let (Some(provider), Some(bucket)) = (provider, bucket) {
            if !provider.accepts(bucket) {
                self.problems.push(format!(
                    "{at}.bucket: {bucket:?} does not match store {} (expected {})",
                    provider.as_str(),
                    provider.scheme_hint()
                ));
            }
        }
        if let Some(secret) = secret {
            if !names::is_dns1123_subdomain(secret) {
                self.problems.push(format!(
                    "{at}.secret: {secret:?} is not a valid Secret name (a DNS-1123 subdomain)"
                ));
            }
        }
        if let Some(key) = secret_key {
            if !names::is_env_name(key) {
                self.problems.push(format!(
                    "{at}.secretKey: {key:?} cannot name an env var (letters, digits, '_', '-' and '.', not starting with a digit)"
                ));
            }
            if RESERVED_ENV.contains(&key) {
                self.problems.push(format!(
                    "{at}.secretKey: {key:?} is an env var the webhook sets itself; use another key name"
                ));
            }
            if let Some(secret) = secret {
                match self.secret_keys.get(key) {
                    Some((other_secret, other_store)) if other_secret != secret => {
                        self.problems.push(format!(
                            "{at}.secretKey: {key:?} is already used with secret {other_secret:?} by store {other_store:?}; the credential env var is named after the key, so one key name cannot point at two secrets"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.secret_keys
                            .insert(key.to_owned(), (secret.to_owned(), name.to_owned()));
                    }
                }
            }
        }
        if self.problems.len() != before {
            return None;
        }
        let (provider, bucket, secret, secret_key) = (provider?, bucket?, secret?, secret_key?);
        if role == Role::Data {
            if let Some(other) = self.data_buckets.insert(bucket.to_owned(), name.to_owned()) {
                self.problems.push(format!(
                    "{at}.bucket: {bucket:?} is already the bucket of data store {other:?}; a run's data paths are keyed by bucket"
                ));
            }
        }
        Some(Backend::Cloud {
            provider,
            bucket: bucket.to_owned(),
            secret: secret.to_owned(),
            secret_key: secret_key.to_owned(),
        })
    }

    fn volume(&mut self, role: Role, at: &str, name: &str, raw: &RawStore) -> Option<Backend> {
        let before = self.problems.len();
        for (field, present) in [
            ("bucket", raw.bucket.is_some()),
            ("secret", raw.secret.is_some()),
            ("secretKey", raw.secret_key.is_some()),
        ] {
            if present {
                self.problems.push(format!(
                    "{at}.{field}: only allowed on a cloud store; add store: gcs, s3 or azure, or remove {field}"
                ));
            }
        }
        let mount_path = match raw.mount_path.as_deref() {
            None => {
                self.problems.push(format!(
                    "{at}: missing mountPath (a volume store needs mountPath, a cloud store needs store, bucket, secret and secretKey)"
                ));
                None
            }
            Some(p) => match names::normalise_mount_path(p) {
                Ok(p) => Some(p),
                Err(why) => {
                    self.problems.push(format!("{at}.mountPath: {p:?} {why}"));
                    None
                }
            },
        };
        let source = match (&raw.host_path, &raw.existing_claim) {
            (Some(_), Some(_)) => {
                self.problems.push(format!(
                    "{at}: hostPath and existingClaim are mutually exclusive; keep one"
                ));
                None
            }
            (Some(host), None) => {
                if !host.starts_with('/') || host.chars().any(char::is_control) {
                    self.problems.push(format!(
                        "{at}.hostPath: {host:?} must be an absolute path on the node"
                    ));
                }
                Some(Source::HostPath(host.clone()))
            }
            (None, Some(claim)) => {
                if !names::is_dns1123_subdomain(claim) {
                    self.problems.push(format!(
                        "{at}.existingClaim: {claim:?} is not a valid PersistentVolumeClaim name (a DNS-1123 subdomain)"
                    ));
                }
                Some(Source::Claim(claim.clone()))
            }
            (None, None) => Some(Source::EmptyDir),
        };
        let read_only = raw.read_only.unwrap_or(false);
        if role == Role::Outputs && read_only {
            self.problems.push(format!(
                "{at}.readOnly: an outputs store is written by the run and cannot be read-only"
            ));
        }
        if let Some(path) = &mount_path {
            if let Some(other) = self.mount_paths.insert(path.clone(), name.to_owned()) {
                self.problems.push(format!(
                    "{at}.mountPath: {path:?} is already the mount path of store {other:?}"
                ));
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Backend::Volume {
            mount_path: mount_path?,
            source: source?,
            read_only,
            volume: Value::Null,
        })
    }

    fn required<'r>(
        &mut self,
        at: &str,
        field: &str,
        value: &'r Option<String>,
    ) -> Option<&'r str> {
        match value.as_deref() {
            Some(v) if !v.is_empty() => Some(v),
            Some(_) => {
                self.problems
                    .push(format!("{at}.{field}: must not be empty"));
                None
            }
            None => {
                self.problems
                    .push(format!("{at}: missing {field} (required on a cloud store)"));
                None
            }
        }
    }
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "nothing",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

fn yaml_key(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| yaml_kind(other).to_owned()),
    }
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid(p)) => p,
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn example_config_is_valid_and_has_every_kind() {
        let c = Config::example();
        let kinds: BTreeSet<&str> = c
            .data
            .values()
            .chain(c.outputs.values())
            .map(|s| match s.backend() {
                Backend::Volume {
                    source: Source::HostPath(_),
                    ..
                } => "hostPath",
                Backend::Volume {
                    source: Source::Claim(_),
                    ..
                } => "claim",
                Backend::Volume {
                    source: Source::EmptyDir,
                    ..
                } => "emptyDir",
                Backend::Cloud { provider, .. } => provider.as_str(),
            })
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from(["hostPath", "claim", "emptyDir", "gcs", "s3", "azure"])
        );
    }

    #[test]
    fn spec_example_loads_with_and_without_top_key() {
        let body = r#"
  data:
    data1:        {mountPath: /data/1, hostPath: /path/to/data, readOnly: true}
    data2:        {mountPath: /data/2, existingClaim: data-2-pvc}
    data-gcs3:    {store: gcs,   bucket: gs://data-bucket,  secret: gcs-secret, secretKey: gcs-key.json}
    data-s3:      {store: s3,    bucket: s3://data-bucket,  secret: s3-secret,  secretKey: s3-key.json}
    data-azure:   {store: azure, bucket: "wasbs://data-container@account.blob.core.windows.net/", secret: az-secret, secretKey: az-key.json}
  outputs:
    outputs1:     {mountPath: /outputs/1, hostPath: /path/to/outputs}
    outputs2:     {mountPath: /outputs/2, existingClaim: outputs-2-pvc}
    outputs-gcs3: {store: gcs, bucket: gs://outputs-bucket, secret: gcs-secret, secretKey: gcs-key.json}
"#;
        let with = Config::from_yaml(&format!("persistence:\n{body}\nimage: ignored\n"))
            .expect("with persistence key");
        let bare = Config::from_yaml(&body.replace("\n  ", "\n")).expect("bare");
        assert_eq!(with, bare);
        assert_eq!(with.stores(Role::Data).len(), 5);
        assert_eq!(with.stores(Role::Outputs).len(), 3);
        let d1 = with.store("data1").expect("data1");
        assert_eq!(d1.path(), "/data/1");
        assert_eq!(
            d1.backend(),
            &Backend::Volume {
                mount_path: "/data/1".into(),
                source: Source::HostPath("/path/to/data".into()),
                read_only: true,
                volume: serde_json::json!({"name": "pw-data1", "hostPath": {"path": "/path/to/data"}}),
            }
        );
    }

    /// Each bad config, and a fragment every reported problem must contain.
    #[test]
    fn every_rule_is_checked_and_named() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("not yaml", "data: [", &["not valid YAML"]),
            ("empty file", "", &["the file is empty"]),
            ("top is a list", "- a", &["must be a mapping"]),
            ("unknown top key", "dta: {}", &["dta: unknown key"]),
            ("unknown store field", "data: {d: {mountPath: /d, hostpath: /x}}", &["data.d", "unknown field `hostpath`"]),
            ("wrong type", "data: {d: {mountPath: /d, readOnly: yes please}}", &["data.d.readOnly: invalid type"]),
            ("store is a list", "data: {d: [1]}", &["data.d: invalid type: sequence, expected a mapping of store fields"]),
            ("relative mount path", "data: {d: {mountPath: data}}", &["data.d.mountPath", "absolute"]),
            ("dotdot mount path", "data: {d: {mountPath: /a/../b}}", &["data.d.mountPath", "'..'"]),
            ("root mount path", "data: {d: {mountPath: /}}", &["data.d.mountPath"]),
            ("missing mount path", "data: {d: {hostPath: /x}}", &["data.d: missing mountPath"]),
            ("null store", "data: {d: }", &["data.d: missing mountPath"]),
            ("both sources", "data: {d: {mountPath: /d, hostPath: /x, existingClaim: c}}", &["data.d: hostPath and existingClaim"]),
            ("relative host path", "data: {d: {mountPath: /d, hostPath: x}}", &["data.d.hostPath"]),
            ("bad claim", "data: {d: {mountPath: /d, existingClaim: Bad_Claim}}", &["data.d.existingClaim"]),
            ("duplicate mount path", "data: {a: {mountPath: /d}, b: {mountPath: /d/}}", &["data.b.mountPath", "store \"a\""]),
            ("duplicate across roles", "data: {a: {mountPath: /d}}\noutputs: {o: {mountPath: /d}}", &["outputs.o.mountPath"]),
            ("bad store name", "data: {Data_1: {mountPath: /d}}", &["data.Data_1: the store name must be a DNS-1123 label"]),
            ("duplicate name", "data: {a: {mountPath: /d}}\noutputs: {a: {mountPath: /o}}", &["outputs.a: the name is already used"]),
            ("read-only outputs", "outputs: {o: {mountPath: /o, readOnly: true}}", &["outputs.o.readOnly"]),
            ("unknown store kind", "data: {d: {store: hdfs, bucket: x, secret: s, secretKey: k}}", &["data.d.store", "gcs, s3 or azure"]),
            ("scheme mismatch", "outputs: {outputs-s3: {store: s3, bucket: gs://x, secret: s, secretKey: k}}", &["outputs.outputs-s3.bucket: \"gs://x\" does not match store s3 (expected s3://<bucket>)"]),
            ("empty gcs bucket", "data: {d: {store: gcs, bucket: gs://, secret: s, secretKey: k}}", &["data.d.bucket"]),
            ("bad azure bucket", "data: {d: {store: azure, bucket: wasbs://account.blob.core.windows.net/, secret: s, secretKey: k}}", &["data.d.bucket"]),
            ("missing bucket", "data: {d: {store: gcs, secret: s, secretKey: k}}", &["data.d: missing bucket"]),
            ("missing secret", "data: {d: {store: gcs, bucket: gs://b, secretKey: k}}", &["data.d: missing secret"]),
            ("missing secretKey", "data: {d: {store: gcs, bucket: gs://b, secret: s}}", &["data.d: missing secretKey"]),
            ("mount path on cloud", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: k, mountPath: /x}}", &["data.d.mountPath: not allowed on a cloud store"]),
            ("bucket without store", "data: {d: {mountPath: /d, bucket: gs://b}}", &["data.d.bucket: only allowed on a cloud store"]),
            ("secretKey two secrets", "data: {a: {store: gcs, bucket: gs://a, secret: s1, secretKey: k}, b: {store: s3, bucket: s3://b, secret: s2, secretKey: k}}", &["data.b.secretKey", "secret \"s1\" by store \"a\""]),
            ("secretKey not an env name", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: 1key}}", &["data.d.secretKey"]),
            ("secretKey reserved", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: POLYAXON_RUN_DATA_PATHS}}", &["data.d.secretKey", "sets itself"]),
            ("bad secret name", "data: {d: {store: gcs, bucket: gs://b, secret: S_1, secretKey: k}}", &["data.d.secret"]),
            ("same data bucket twice", "data: {a: {store: gcs, bucket: gs://b, secret: s, secretKey: k}, c: {store: gcs, bucket: gs://b, secret: s, secretKey: k}}", &["data.c.bucket", "data store \"a\""]),
            ("empty namespaces", "data: {d: {mountPath: /d, namespaces: []}}", &["data.d.namespaces: the list is empty"]),
            ("bad namespace", "data: {d: {mountPath: /d, namespaces: [Team_A]}}", &["data.d.namespaces"]),
            ("unknown default outputs", "outputs: {o: {mountPath: /o}}\ndefaultOutputs: nope", &["defaultOutputs: \"nope\" is not an outputs store (outputs stores: o)"]),
            ("section is a list", "data: [a]", &["data: expected a mapping"]),
            ("isolateNamespaces on data", "data: {d: {mountPath: /d, isolateNamespaces: true}}", &["data.d.isolateNamespaces: only allowed on an outputs store"]),
            ("isolateNamespaces on cloud data", "data: {d: {store: gcs, bucket: gs://b, secret: s, secretKey: k, isolateNamespaces: false}}", &["data.d.isolateNamespaces: only allowed on an outputs store"]),
            ("isolateNamespaces not a bool", "outputs: {o: {mountPath: /o, isolateNamespaces: maybe}}", &["outputs.o.isolateNamespaces: invalid type"]),
        ];
        for (what, yaml, fragments) in cases {
            let got = problems(yaml);
            assert!(!got.is_empty(), "{what}: accepted {yaml:?}");
            for fragment in *fragments {
                assert!(
                    got.iter().any(|p| p.contains(fragment)),
                    "{what}: no problem mentions {fragment:?}; got {got:#?}"
                );
            }
        }
    }

    #[test]
    fn a_duplicate_of_an_invalid_store_is_reported_too() {
        let got = problems("data: {a: {mountPath: rel}}\noutputs: {a: {mountPath: /o}}");
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got.iter()
                .any(|p| p.starts_with("outputs.a: the name is already used")),
            "{got:#?}"
        );
    }

    #[test]
    fn all_problems_are_reported_together() {
        let got = problems(
            "data: {a: {mountPath: rel}, b: {store: s3, bucket: gs://x, secret: s, secretKey: k}}\noutputs: {o: {mountPath: /o, readOnly: true}}",
        );
        assert_eq!(got.len(), 3, "{got:#?}");
        let shown = ConfigError::Invalid(got).to_string();
        assert!(shown.starts_with("3 problems:\n  - "), "{shown}");
    }

    #[test]
    fn good_configs_load() {
        let cases = [
            ("empty sections", "data:\noutputs:\n"),
            ("empty dir", "data: {scratch: {mountPath: /scratch}}"),
            ("trailing slash normalised", "data: {d: {mountPath: /d/}}"),
            ("same secret reused", "data: {a: {store: gcs, bucket: gs://a, secret: s, secretKey: k}}\noutputs: {o: {store: gcs, bucket: gs://o, secret: s, secretKey: k}}"),
            ("azure with path", "data: {a: {store: azure, bucket: \"wasbs://c@acct.blob.core.windows.net/some/dir\", secret: s, secretKey: k}}"),
            ("namespaces", "data: {d: {mountPath: /d, namespaces: [team-a, team-b]}}"),
            ("persistence null", "persistence:\n"),
        ];
        for (what, yaml) in cases {
            if let Err(e) = Config::from_yaml(yaml) {
                panic!("{what}: refused: {e}");
            }
        }
        let c = Config::from_yaml("data: {d: {mountPath: /d/}}").expect("valid");
        assert_eq!(c.store("d").map(Store::path), Some("/d"));
    }

    #[test]
    fn isolate_namespaces_on_outputs_stores() {
        let c = Config::from_yaml(
            "outputs:\n  shared: {mountPath: /o, isolateNamespaces: true}\n  bucket: {store: s3, bucket: s3://b, secret: s, secretKey: k, isolateNamespaces: true}\n  plain: {mountPath: /p}\n",
        )
        .expect("valid");
        let isolates = |n: &str| c.store(n).map(Store::isolates_namespaces);
        assert_eq!(isolates("shared"), Some(true));
        assert_eq!(isolates("bucket"), Some(true));
        assert_eq!(isolates("plain"), Some(false), "off by default");
    }

    #[test]
    fn availability_is_indexed_by_namespace() {
        let c = Config::from_yaml(
            "data:\n  a: {mountPath: /a}\n  b: {mountPath: /b, namespaces: [x, y]}\n  c: {mountPath: /c}\n  d: {mountPath: /d, namespaces: [y]}\n  e: {mountPath: /e, namespaces: [x]}\n",
        )
        .expect("valid");
        let names =
            |ns: &str| -> Vec<&str> { c.available(Role::Data, ns).map(Store::name).collect() };
        assert_eq!(names("x"), ["a", "b", "c", "e"], "merged in name order");
        assert_eq!(names("y"), ["a", "b", "c", "d"]);
        assert_eq!(names("z"), ["a", "c"]);
        for ns in ["x", "y", "z"] {
            assert_eq!(c.available_count(Role::Data, ns), names(ns).len(), "{ns}");
            // The index agrees with each store's own rule.
            let by_rule: Vec<&str> = c
                .stores(Role::Data)
                .values()
                .filter(|s| s.available_in(ns))
                .map(Store::name)
                .collect();
            assert_eq!(names(ns), by_rule, "{ns}");
        }
    }

    #[test]
    fn default_outputs_respects_namespaces() {
        let c = Config::from_yaml(
            "outputs:\n  a: {mountPath: /a, namespaces: [team-a]}\n  b: {mountPath: /b}\n  c: {mountPath: /c}\ndefaultOutputs: c\n",
        )
        .expect("valid");
        assert_eq!(c.default_outputs("x").map(Store::name), Some("c"));
        let c = Config::from_yaml(
            "outputs:\n  a: {mountPath: /a}\n  b: {mountPath: /b}\n  c: {mountPath: /c, namespaces: [team-c]}\ndefaultOutputs: c\n",
        )
        .expect("valid");
        assert_eq!(c.default_outputs("team-c").map(Store::name), Some("c"));
        assert_eq!(c.default_outputs("other").map(Store::name), Some("a"));
        let c =
            Config::from_yaml("outputs:\n  a: {mountPath: /a, namespaces: [x]}\n").expect("valid");
        assert_eq!(c.default_outputs("y").map(Store::name), None);
    }
}
