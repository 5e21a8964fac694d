//! The validator: from the parsed YAML to a [`Config`], checking every rule
//! of SPEC §2 and reporting every problem found at once, each naming the
//! store and the field, so that one edit fixes the whole file.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::fragments::Fragments;
use super::raw::RawStore;
use super::{
    Availability, Backend, Config, ConfigError, Credentials, Problem, Provider, Role, SdkKeys,
    Source, Store,
};
use crate::k8s;
use crate::names;
use crate::text::clip;
use crate::vocabulary::{GCS_CREDENTIALS_DIR, RESERVED_ENV};

#[derive(Default)]
pub(super) struct Validator {
    problems: Vec<Problem>,
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
    fn problem(&mut self, at: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(at, message));
    }

    pub(super) fn run(mut self, doc: serde_yaml::Value) -> Result<Config, ConfigError> {
        let mut top = match doc {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => {
                return Err(ConfigError::Invalid(vec![Problem::new(
                    "",
                    "the file is empty: expected a mapping with data and outputs stores",
                )]))
            }
            other => {
                return Err(ConfigError::Invalid(vec![Problem::new(
                    "",
                    format!(
                        "the file must be a mapping with {TOP_KEYS} (optionally under persistence:), found {}",
                        yaml_kind(&other)
                    ),
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
                    return Err(ConfigError::Invalid(vec![Problem::new(
                        "persistence",
                        format!(
                            "expected a mapping with {TOP_KEYS}, found {}",
                            yaml_kind(&other)
                        ),
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
                    other => self.problem(
                        format!("{prefix}defaultOutputs"),
                        format!(
                            "expected an outputs store name, found {}",
                            yaml_kind(&other)
                        ),
                    ),
                },
                _ => self.problem(
                    format!("{prefix}{}", yaml_key(&key)),
                    format!("unknown key (expected {TOP_KEYS})"),
                ),
            }
        }
        for (role, section) in sections {
            self.section(role, section);
        }
        if let Some(name) = &default_outputs {
            if !self.outputs.contains_key(name) {
                self.problem(
                    format!("{prefix}defaultOutputs"),
                    format!(
                        "{name:?} is not an outputs store (outputs stores: {})",
                        list_or_none(self.outputs.keys())
                    ),
                );
            }
        }
        if self.problems.is_empty() {
            let mut relevant = crate::pod::Relevant {
                env_keys: self.secret_keys.into_keys().collect(),
                ..Default::default()
            };
            relevant.mount_paths.insert(GCS_CREDENTIALS_DIR.to_owned());
            for (stores, paths) in [
                (&self.data, &mut relevant.mount_paths),
                (&self.outputs, &mut relevant.outputs_roots),
            ] {
                for store in stores.values() {
                    if let Backend::Volume { mount_path, .. } = store.backend() {
                        paths.insert(mount_path.clone());
                    }
                }
            }
            Ok(Config {
                relevant,
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
                self.problem(
                    role.as_str(),
                    format!(
                        "expected a mapping of store name to store, found {}",
                        yaml_kind(&other)
                    ),
                );
                return;
            }
        };
        for (key, value) in entries {
            let Some(name) = key.as_str().map(str::to_owned) else {
                self.problem(
                    role.as_str(),
                    format!("store name {} is not a string", yaml_key(&key)),
                );
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
                        self.problem(&*at, why);
                        continue;
                    }
                },
            };
            let before = self.problems.len();
            if !names::is_dns1123_label(&name) {
                self.problem(&*at, "the store name must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)");
            }
            if !self.names.insert(name.clone()) {
                self.problem(&*at, "the name is already used by another store (names are unique across data and outputs)");
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
                self.problem(format!("{at}.isolateNamespaces"), "only allowed on an outputs store (it puts each run's outputs sub-path under <namespace>/); remove it from this data store");
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
                self.problem(at, format!("its pod volume name {volume_name:?} collides with store {other:?}; rename one of them"));
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
            fragments: Fragments::of(role, &backend),
            backend,
            namespaces,
            volume_name,
            isolate_namespaces,
        })
    }

    fn namespaces(&mut self, at: &str, raw: Option<Vec<String>>) -> Option<BTreeSet<String>> {
        let list = raw?;
        if list.is_empty() {
            self.problem(format!("{at}.namespaces"), "the list is empty, so no pod could use the store; remove the field to allow every namespace");
        }
        for ns in &list {
            if !names::is_dns1123_label(ns) {
                self.problem(
                    format!("{at}.namespaces"),
                    format!("{ns:?} is not a valid namespace name (a DNS-1123 label)"),
                );
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
                self.problem(format!("{at}.{field}"), format!("not allowed on a cloud store (store: {kind}); a bucket store has store, bucket, and optionally secret and secretKey"));
            }
        }
        let provider = Provider::parse(kind);
        if provider.is_none() {
            self.problem(
                format!("{at}.store"),
                format!("{kind:?} is not a store kind (expected gcs, s3 or azure)"),
            );
        }
        let bucket = self.required(at, "bucket", &raw.bucket);
        if let (Some(provider), Some(bucket)) = (provider, bucket) {
            if !provider.accepts(bucket) {
                self.problem(
                    format!("{at}.bucket"),
                    format!(
                        "{bucket:?} does not match store {} (expected {})",
                        provider.as_str(),
                        provider.scheme_hint()
                    ),
                );
            }
        }
        let endpoint = self.endpoint(at, kind, provider, raw.endpoint.as_deref());
        let region = self.region(at, kind, provider, raw.region.as_deref());
        let credentials = self.credentials(at, name, kind, provider, raw);
        if self.problems.len() != before {
            return None;
        }
        let (provider, bucket) = (provider?, bucket?);
        if role == Role::Data {
            if let Some(other) = self.data_buckets.insert(bucket.to_owned(), name.to_owned()) {
                self.problem(format!("{at}.bucket"), format!("{bucket:?} is already the bucket of data store {other:?}; a run's data paths are keyed by bucket"));
            }
        }
        Some(Backend::Cloud {
            provider,
            bucket: bucket.to_owned(),
            credentials,
            endpoint,
            region,
        })
    }

    /// `endpoint` (s3, gcs): `http(s)://host[:port]`, one trailing `/`
    /// dropped; the clients append their own paths to it.
    fn endpoint(
        &mut self,
        at: &str,
        kind: &str,
        provider: Option<Provider>,
        endpoint: Option<&str>,
    ) -> Option<String> {
        let endpoint = endpoint?;
        let field = format!("{at}.endpoint");
        if provider == Some(Provider::Azure) {
            self.problem(field, format!("not allowed on store {kind} (only s3 and gcs take an endpoint; an Azure connection string names its own endpoint: use connectionStringKey)"));
            return None;
        }
        match names::check_endpoint(endpoint) {
            Ok(clean) => Some(clean.to_owned()),
            Err(why) => {
                self.problem(field, format!("{:?} {why}", clip(endpoint)));
                None
            }
        }
    }

    /// `region` (s3 only).
    fn region(
        &mut self,
        at: &str,
        kind: &str,
        provider: Option<Provider>,
        region: Option<&str>,
    ) -> Option<String> {
        let region = region?;
        let field = format!("{at}.region");
        if provider.is_some_and(|p| p != Provider::S3) {
            self.problem(
                field,
                format!("not allowed on store {kind} (only s3 takes a region)"),
            );
            return None;
        }
        let ok = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            self.problem(
                field,
                format!(
                    "{:?} is not a region name (letters, digits, '-' and '_', e.g. us-east-1)",
                    clip(region)
                ),
            );
            return None;
        }
        Some(region.to_owned())
    }

    /// `secret` and `secretKey` (both or neither: neither is a keyless
    /// store), and the SDK key fields, which need `secret`.
    fn credentials(
        &mut self,
        at: &str,
        name: &str,
        kind: &str,
        provider: Option<Provider>,
        raw: &RawStore,
    ) -> Option<Credentials> {
        let secret = self.non_empty(at, "secret", &raw.secret);
        let secret_key = self.non_empty(at, "secretKey", &raw.secret_key);
        let sdk_fields = [
            ("accessKeyIdKey", &raw.access_key_id_key, Provider::S3),
            (
                "secretAccessKeyKey",
                &raw.secret_access_key_key,
                Provider::S3,
            ),
            ("sessionTokenKey", &raw.session_token_key, Provider::S3),
            (
                "connectionStringKey",
                &raw.connection_string_key,
                Provider::Azure,
            ),
            ("accountKeyKey", &raw.account_key_key, Provider::Azure),
        ];
        let mut sdk_ok = true;
        for (field, value, only) in sdk_fields {
            let Some(key) = value else { continue };
            let at_field = format!("{at}.{field}");
            if provider.is_some_and(|p| p != only) {
                self.problem(
                    at_field,
                    format!(
                        "not allowed on store {kind} (only {} takes it)",
                        only.as_str()
                    ),
                );
                sdk_ok = false;
            } else if !names::is_secret_key(key) {
                self.problem(
                    at_field,
                    format!(
                        "{:?} is not a Secret key (letters, digits, '-', '_' and '.', at most 253)",
                        clip(key)
                    ),
                );
                sdk_ok = false;
            } else if raw.secret.is_none() {
                self.problem(at_field, "names a key of the store's Secret, but the store has no secret; add secret and secretKey, or remove the field");
                sdk_ok = false;
            }
        }
        match (
            &raw.access_key_id_key,
            &raw.secret_access_key_key,
            &raw.session_token_key,
        ) {
            (Some(_), None, _) => {
                self.problem(format!("{at}.secretAccessKeyKey"), "missing: accessKeyIdKey and secretAccessKeyKey are the two halves of one access key; give both or neither");
                sdk_ok = false;
            }
            (None, Some(_), _) => {
                self.problem(format!("{at}.accessKeyIdKey"), "missing: accessKeyIdKey and secretAccessKeyKey are the two halves of one access key; give both or neither");
                sdk_ok = false;
            }
            (None, None, Some(_)) => {
                self.problem(format!("{at}.sessionTokenKey"), "a session token is only used with an access key: add accessKeyIdKey and secretAccessKeyKey, or remove sessionTokenKey");
                sdk_ok = false;
            }
            _ => {}
        }
        if raw.connection_string_key.is_some() && raw.account_key_key.is_some() {
            self.problem(format!("{at}.accountKeyKey"), "connectionStringKey and accountKeyKey are two ways to give one credential; keep one");
            sdk_ok = false;
        }
        let (secret, secret_key) = match (secret, secret_key) {
            (None, None) => {
                return None;
            }
            (Some(_), None) if raw.secret_key.is_none() => {
                self.problem(at, "has secret but no secretKey: give both (the Secret and its key holding the polystores credential), or neither for a keyless store that uses the pod's workload identity");
                return None;
            }
            (None, Some(_)) if raw.secret.is_none() => {
                self.problem(at, "has secretKey but no secret: give both (the Secret and its key holding the polystores credential), or neither for a keyless store that uses the pod's workload identity");
                return None;
            }
            (Some(secret), Some(key)) => (secret, key),
            // An empty one was reported by non_empty.
            _ => return None,
        };
        if !names::is_dns1123_subdomain(secret) {
            self.problem(
                format!("{at}.secret"),
                format!("{secret:?} is not a valid Secret name (a DNS-1123 subdomain)"),
            );
        }
        if !names::is_env_name(secret_key) {
            self.problem(format!("{at}.secretKey"), format!("{secret_key:?} cannot name an env var (letters, digits, '_', '-' and '.', not starting with a digit)"));
        }
        if RESERVED_ENV.contains(&secret_key) {
            self.problem(
                format!("{at}.secretKey"),
                format!(
                    "{secret_key:?} is an env var the webhook sets itself; use another key name"
                ),
            );
        }
        match self.secret_keys.get(secret_key) {
            Some((other_secret, other_store)) if other_secret != secret => {
                self.problem(format!("{at}.secretKey"), format!("{secret_key:?} is already used with secret {other_secret:?} by store {other_store:?}; the credential env var is named after the key, so one key name cannot point at two secrets"));
            }
            Some(_) => {}
            None => {
                self.secret_keys
                    .insert(secret_key.to_owned(), (secret.to_owned(), name.to_owned()));
            }
        }
        // The pair wins over the Azure keys only when both were given on the
        // right kind, which sdk_ok says: a misuse above leaves no SDK keys.
        let sdk = match (
            sdk_ok,
            &raw.access_key_id_key,
            &raw.secret_access_key_key,
            &raw.connection_string_key,
            &raw.account_key_key,
        ) {
            (true, Some(id), Some(secret_access), _, _) => SdkKeys::S3 {
                access_key_id: id.clone(),
                secret_access_key: secret_access.clone(),
                session_token: raw.session_token_key.clone(),
            },
            (true, _, _, Some(key), _) => SdkKeys::AzureConnectionString(key.clone()),
            (true, _, _, _, Some(key)) => SdkKeys::AzureAccountKey(key.clone()),
            _ => SdkKeys::None,
        };
        Some(Credentials {
            secret: secret.to_owned(),
            secret_key: secret_key.to_owned(),
            sdk,
        })
    }

    fn volume(&mut self, role: Role, at: &str, name: &str, raw: &RawStore) -> Option<Backend> {
        let before = self.problems.len();
        for (field, present) in [
            ("bucket", raw.bucket.is_some()),
            ("secret", raw.secret.is_some()),
            ("secretKey", raw.secret_key.is_some()),
            ("endpoint", raw.endpoint.is_some()),
            ("region", raw.region.is_some()),
            ("accessKeyIdKey", raw.access_key_id_key.is_some()),
            ("secretAccessKeyKey", raw.secret_access_key_key.is_some()),
            ("sessionTokenKey", raw.session_token_key.is_some()),
            ("connectionStringKey", raw.connection_string_key.is_some()),
            ("accountKeyKey", raw.account_key_key.is_some()),
        ] {
            if present {
                self.problem(format!("{at}.{field}"), format!("only allowed on a cloud store; add store: gcs, s3 or azure, or remove {field}"));
            }
        }
        let mount_path = match raw.mount_path.as_deref() {
            None => {
                self.problem(at, "missing mountPath (a volume store needs mountPath, a cloud store needs store and bucket)");
                None
            }
            Some(p) => match names::normalise_mount_path(p) {
                Ok(p) => Some(p),
                Err(why) => {
                    self.problem(format!("{at}.mountPath"), format!("{p:?} {why}"));
                    None
                }
            },
        };
        let source = match (&raw.host_path, &raw.existing_claim) {
            (Some(_), Some(_)) => {
                self.problem(
                    at,
                    "hostPath and existingClaim are mutually exclusive; keep one",
                );
                None
            }
            (Some(host), None) => {
                if !host.starts_with('/') || host.chars().any(char::is_control) {
                    self.problem(
                        format!("{at}.hostPath"),
                        format!("{host:?} must be an absolute path on the node"),
                    );
                }
                Some(Source::HostPath(host.clone()))
            }
            (None, Some(claim)) => {
                if !names::is_dns1123_subdomain(claim) {
                    self.problem(format!("{at}.existingClaim"), format!("{claim:?} is not a valid PersistentVolumeClaim name (a DNS-1123 subdomain)"));
                }
                Some(Source::Claim(claim.clone()))
            }
            (None, None) => Some(Source::EmptyDir),
        };
        let read_only = raw.read_only.unwrap_or(false);
        if role == Role::Outputs && read_only {
            self.problem(
                format!("{at}.readOnly"),
                "an outputs store is written by the run and cannot be read-only",
            );
        }
        if let Some(path) = &mount_path {
            if let Some(other) = self.mount_paths.insert(path.clone(), name.to_owned()) {
                self.problem(
                    format!("{at}.mountPath"),
                    format!("{path:?} is already the mount path of store {other:?}"),
                );
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

    /// An optional field that, when given, must not be empty.
    fn non_empty<'r>(
        &mut self,
        at: &str,
        field: &str,
        value: &'r Option<String>,
    ) -> Option<&'r str> {
        match value.as_deref() {
            Some("") => {
                self.problem(format!("{at}.{field}"), "must not be empty");
                None
            }
            other => other,
        }
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
                self.problem(format!("{at}.{field}"), "must not be empty");
                None
            }
            None => {
                self.problem(at, format!("missing {field} (required on a cloud store)"));
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
