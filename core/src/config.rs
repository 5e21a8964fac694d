//! The operator's persistence config (SPEC §2): the raw serde model of the
//! file and its validation into a [`Config`] whose invariants the rest of the
//! crate relies on. Pure: it takes text, never opens files.
//!
//! Every rule is checked at load and every problem found is reported, each
//! naming the store and the field, so one edit fixes the whole file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::k8s;

/// The example config shipped with the crate: every store kind, used by the
/// README's first command and by the server's try-it mode.
pub const EXAMPLE_YAML: &str = include_str!("../../examples/persistence.yaml");

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not YAML at all (the message carries line and column).
    #[error("not valid YAML: {0}")]
    Yaml(#[source] serde_yaml::Error),
    /// The YAML parsed but breaks one or more rules; every problem is listed.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One problem in a config file: where it is (a dotted path such as
/// `data.data1.mountPath`, empty for the file as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted path to the key concerned; empty for the whole file.
    pub at: String,
    /// What is wrong, for the operator who must fix it.
    pub message: String,
}

impl Problem {
    /// A problem at `at`.
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            at: at.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

struct Problems<'a>(&'a [Problem]);

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

    /// The storage account of an Azure bucket URL
    /// (`wasbs://<container>@<account>.blob.core.windows.net/...`).
    pub fn azure_account(bucket: &str) -> Option<&str> {
        let rest = bucket.strip_prefix("wasbs://")?;
        let host = rest.split('/').next()?;
        let (_, account_host) = host.split_once('@')?;
        account_host
            .strip_suffix(".blob.core.windows.net")
            .filter(|account| !account.is_empty())
    }

    /// Whether `bucket` is a well-formed URL for this provider.
    fn accepts(self, bucket: &str) -> bool {
        let non_empty_head = |rest: &str| rest.split('/').next().is_some_and(|b| !b.is_empty());
        match self {
            Provider::Gcs => bucket.strip_prefix("gs://").is_some_and(non_empty_head),
            Provider::S3 => bucket.strip_prefix("s3://").is_some_and(non_empty_head),
            Provider::Azure => {
                let container = bucket
                    .strip_prefix("wasbs://")
                    .and_then(|rest| rest.split_once('@'))
                    .map(|(container, _)| container);
                container.is_some_and(|c| !c.is_empty() && !c.contains('/'))
                    && Provider::azure_account(bucket).is_some()
            }
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
    /// A bucket, reached with credentials from a Secret or, keyless, with
    /// the pod's own workload identity (SPEC §7).
    Cloud {
        /// gcs, s3 or azure.
        provider: Provider,
        /// The bucket URL, used verbatim.
        bucket: String,
        /// The Secret keys the run's clients read; `None` for a keyless store.
        credentials: Option<Credentials>,
        /// `http(s)://host[:port]` of an S3-compatible or GCS-API server.
        endpoint: Option<String>,
        /// The S3 region.
        region: Option<String>,
    },
}

/// A cloud store's credentials: keys of one Secret, only ever referenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The Secret.
    pub secret: String,
    /// The key polystores reads (a JSON credential), and the name of the
    /// env var that references it.
    pub secret_key: String,
    /// The keys the cloud SDKs read, when the store names them.
    pub sdk: SdkKeys,
}

/// Keys of the store's Secret that become the SDKs' credential variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkKeys {
    /// None given.
    None,
    /// `accessKeyIdKey`, `secretAccessKeyKey` and the optional `sessionTokenKey`.
    S3 {
        /// Key holding the access key id.
        access_key_id: String,
        /// Key holding the secret access key.
        secret_access_key: String,
        /// Key holding a session token.
        session_token: Option<String>,
    },
    /// `connectionStringKey`: key holding an Azure Storage connection string.
    AzureConnectionString(String),
    /// `accountKeyKey`: key holding the Azure Storage account key.
    AzureAccountKey(String),
}

impl SdkKeys {
    /// Every Secret key named, with the config field that names it.
    pub fn keys(&self) -> Vec<(&'static str, &str)> {
        match self {
            SdkKeys::None => Vec::new(),
            SdkKeys::S3 {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let mut keys = vec![
                    ("accessKeyIdKey", access_key_id.as_str()),
                    ("secretAccessKeyKey", secret_access_key.as_str()),
                ];
                if let Some(token) = session_token {
                    keys.push(("sessionTokenKey", token.as_str()));
                }
                keys
            }
            SdkKeys::AzureConnectionString(key) => vec![("connectionStringKey", key.as_str())],
            SdkKeys::AzureAccountKey(key) => vec![("accountKeyKey", key.as_str())],
        }
    }
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
    fragments: Fragments,
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

    /// Its parts of a patch, serialised at load.
    pub fn fragments(&self) -> &Fragments {
        &self.fragments
    }

    /// Whether every run's sub-path in this outputs store goes under
    /// `<namespace>/` (`isolateNamespaces: true`, SPEC §3).
    pub fn isolates_namespaces(&self) -> bool {
        self.isolate_namespaces
    }

    /// The namespaces the store is limited to; `None` when it is available
    /// everywhere.
    pub fn namespaces(&self) -> Option<&BTreeSet<String>> {
        self.namespaces.as_ref()
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
    /// What of a pod its reviews can read.
    relevant: crate::pod::Relevant,
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
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(ConfigError::Yaml)?;
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

    /// What of a pod's containers its reviews can read: the env vars and
    /// mounts that can meet the webhook's.
    pub fn relevant(&self) -> &crate::pod::Relevant {
        &self.relevant
    }

    /// The config's `defaultOutputs`, as written.
    pub fn default_outputs_name(&self) -> Option<&str> {
        self.default_outputs.as_deref()
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

mod fragments;
mod raw;
mod validate;

pub use fragments::{EnvFragment, EnvSource, Fragments, GcsKey};

use validate::Validator;

#[cfg(test)]
mod tests;
