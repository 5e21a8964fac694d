//! The validator: from the parsed YAML to a [`Config`], checking every rule
//! of SPEC §2 and reporting every problem found at once, each naming the
//! store and the field, so that one edit fixes the whole file.

use std::collections::{BTreeMap, BTreeSet};

use super::fragments::Fragments;
use super::raw::RawStore;
use super::{Availability, Backend, Config, ConfigError, Problem, Role, Store};
use crate::k8s;
use crate::names;
use crate::vocabulary::GCS_CREDENTIALS_DIR;

mod cloud;
mod credentials;
mod volume;

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
    pub(super) fn problem(&mut self, at: impl Into<String>, message: impl Into<String>) {
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
                // The rest of a pasted Polyaxon `persistence:` block.
                Some("logs" | "repos" | "upload") => self.problem(
                    format!("{prefix}{}", yaml_key(&key)),
                    format!(
                        "Polyaxon's own volume, not a store runs select: delete it (the keys here are {TOP_KEYS})"
                    ),
                ),
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

    /// An optional field that, when given, must not be empty.
    pub(super) fn non_empty<'r>(
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

    pub(super) fn required<'r>(
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
