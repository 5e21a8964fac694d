//! The pod's selection (SPEC §3): the `polyaxon.com/persistence` annotation
//! and the outputs sub-path annotations, resolved against the config into the
//! stores, containers and sub-path this pod gets. Pure.
//!
//! This module resolves the annotation (which stores, which containers);
//! `sub_path` holds the rules for where the run writes in its outputs store.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use serde::Deserialize;

use crate::config::{Config, Role, Store};
use crate::pod::{annotation_field, Annotations};
use crate::text::clip;
use crate::vocabulary::{ANNOTATION_PERSISTENCE, ANNOTATION_UNIQUE_NAME};
use kubelet::SubPathError;

/// Who the pod is, as far as the selection needs to know.
#[derive(Debug, Clone, Copy)]
pub struct PodIdentity<'a> {
    /// The namespace the pod is created in.
    pub namespace: &'a str,
    /// `metadata.name` (or the request's name), if already chosen.
    pub name: Option<&'a str>,
    /// `metadata.generateName`.
    pub generate_name: Option<&'a str>,
    /// The name of the `batch/v1` Job that controls the pod, if one does.
    pub job: Option<&'a str>,
    /// The admission request's uid, which completes a generateName pod's sub-path.
    pub uid: &'a str,
}

/// The selected outputs store and where this run writes in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs<'c> {
    /// The store.
    pub store: &'c Store,
    /// The run's relative directory in the store.
    pub sub_path: String,
    /// `<mountPath or bucket>/<sub_path>`, joined with exactly one `/`.
    pub path: String,
    /// Why this store (SPEC §3).
    pub choice: OutputsChoice,
    /// Which rule gave the sub-path (SPEC §3).
    pub rule: SubPathSource,
    /// For a kept recorded path: what the rules would give today, when that
    /// differs (`None` when the same, or when they would refuse it).
    pub derived: Option<String>,
}

/// Why the pod gets its outputs store (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputsChoice {
    /// The selection names it.
    Asked,
    /// Not named: the config's `defaultOutputs`, available to the namespace.
    DefaultOutputs,
    /// Not named, and no usable `defaultOutputs`: the first available by name.
    FirstAvailable,
}

/// What a pod gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection<'c> {
    /// Selected data stores, in name order.
    pub data: Vec<&'c Store>,
    /// The selection names no `data`: every data store of the namespace.
    pub data_by_default: bool,
    /// The outputs store, if any.
    pub outputs: Option<Outputs<'c>>,
    /// The containers (or init containers) to inject; `None` means all.
    pub containers: Option<BTreeSet<String>>,
}

impl Selection<'_> {
    /// Whether the container of this name gets mounts and env.
    pub fn targets(&self, container: &str) -> bool {
        self.containers
            .as_ref()
            .is_none_or(|names| names.contains(container))
    }
}

/// Why a selection was refused. Each message names the annotation; the ones
/// about stores also list what the namespace may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// Not YAML or JSON, an unknown key, a wrong type.
    #[error("annotation {ANNOTATION_PERSISTENCE} is not a valid selection: {reason}. {available}")]
    Syntax {
        /// The parser's message.
        reason: String,
        /// The stores the namespace may use.
        available: String,
    },
    /// `outputs: [a, b]`.
    #[error("annotation {ANNOTATION_PERSISTENCE}: outputs must be a single store name, not a list (a run writes to exactly one outputs store). {available}")]
    OutputsList {
        /// The stores the namespace may use.
        available: String,
    },
    /// A name that is not a store of that role.
    #[error("annotation {ANNOTATION_PERSISTENCE}: {role} store {name:?} does not exist{hint}. {available}")]
    UnknownStore {
        /// data or outputs.
        role: Role,
        /// The name asked for.
        name: String,
        /// e.g. ", it is a data store".
        hint: String,
        /// The stores the namespace may use.
        available: String,
    },
    /// A store limited to other namespaces.
    #[error("annotation {ANNOTATION_PERSISTENCE}: {role} store {name:?} is not available in namespace {namespace:?}. {available}")]
    NotAvailable {
        /// data or outputs.
        role: Role,
        /// The name asked for.
        name: String,
        /// The pod's namespace.
        namespace: String,
        /// The stores the namespace may use.
        available: String,
    },
    /// `containers` names a container the pod does not have.
    #[error("annotation {ANNOTATION_PERSISTENCE}: containers names {name:?}, which is not a container or init container of this pod (it has: {known})")]
    UnknownContainer {
        /// The name asked for.
        name: String,
        /// The pod's containers.
        known: String,
    },
    /// `containers: []`.
    #[error("annotation {ANNOTATION_PERSISTENCE}: containers is empty; name at least one container, or opt the pod out with the label polyaxon.com/persistence-injection: disabled")]
    NoContainers,
    /// A sub-path, from whichever rule, is not a safe relative path the
    /// kubelet can create.
    #[error("{annotation}: sub-path {path:?} {why}")]
    SubPath {
        /// Where it came from.
        annotation: SubPathSource,
        /// The offending path, clipped.
        path: String,
        /// What is wrong with it.
        #[source]
        why: SubPathError,
    },
    /// A unique name that is not one of Polyaxon's run name forms.
    #[error("annotation {ANNOTATION_UNIQUE_NAME}: {value:?} is not a Polyaxon run name (expected user.project.<id>, user.project.<group>.<id>, or user.project.<jobs|builds|notebooks|tensorboards>.<id>)")]
    UniqueName {
        /// The annotation's value.
        value: String,
    },
}

/// The annotation as written by the run. Unknown keys are refused so that a
/// typo (`output:`) does not silently fall back to the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelection {
    #[serde(default)]
    data: Option<Vec<String>>,
    #[serde(default)]
    outputs: Option<OneOrMany>,
    #[serde(default)]
    containers: Option<Vec<String>>,
}

/// `outputs:` is one store name; a list is a distinct, explained denial.
/// (Written by hand: an untagged enum's error names neither the field nor
/// what was expected.)
#[derive(Debug)]
enum OneOrMany {
    One(String),
    Many,
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an outputs store name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            // YAML reads `outputs: 456` as a number; store names may be all digits.
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<OneOrMany, S::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(OneOrMany::Many)
            }
        }
        d.deserialize_any(V)
    }
}

impl SelectionError {
    /// The pod field the author must fix, as a Kubernetes field path.
    pub fn field(&self) -> String {
        match self {
            SelectionError::SubPath { annotation, .. } => annotation.field(),
            SelectionError::UniqueName { .. } => annotation_field(ANNOTATION_UNIQUE_NAME),
            _ => annotation_field(ANNOTATION_PERSISTENCE),
        }
    }
}

/// Resolves the pod's selection against the config.
///
/// `injected_path` is the `outputsPath` the pod already records in
/// `polyaxon.com/persistence-injected`, if any: when it lies under the
/// selected outputs store it is kept, so a replayed pod comes through
/// unchanged.
pub fn resolve<'c, 'p>(
    config: &'c Config,
    pod: PodIdentity<'_>,
    annotations: &Annotations<'_>,
    injected_path: Option<&str>,
    container_names: impl IntoIterator<Item = &'p str, IntoIter: Clone>,
) -> Result<Selection<'c>, SelectionError> {
    let container_names = container_names.into_iter();
    let ns = pod.namespace;
    let available = || available_stores(config, ns);
    let raw = match annotations.persistence.as_deref() {
        None => RawSelection::default(),
        Some(text) => parse(text).map_err(|reason| SelectionError::Syntax {
            reason,
            available: available(),
        })?,
    };

    let data_by_default = raw.data.is_none();
    let data = match raw.data {
        None => config.available(Role::Data, ns).collect(),
        Some(names) => {
            // Hashed: a list of n names costs n lookups, not n² comparisons.
            let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
            let mut picked: Vec<&Store> = Vec::with_capacity(names.len());
            for name in &names {
                if !seen.insert(name.as_str()) {
                    continue;
                }
                picked.push(lookup(config, Role::Data, name, ns, &available)?);
            }
            picked.sort_unstable_by(|a, b| a.name().cmp(b.name()));
            picked
        }
    };

    let outputs_store = match raw.outputs {
        None => config.default_outputs(ns).map(|store| {
            let choice = if config.default_outputs_name() == Some(store.name()) {
                OutputsChoice::DefaultOutputs
            } else {
                OutputsChoice::FirstAvailable
            };
            (store, choice)
        }),
        Some(OneOrMany::One(name)) => Some((
            lookup(config, Role::Outputs, &name, ns, &available)?,
            OutputsChoice::Asked,
        )),
        Some(OneOrMany::Many) => {
            return Err(SelectionError::OutputsList {
                available: available(),
            })
        }
    };
    let outputs = match outputs_store {
        None => None,
        Some((store, choice)) => {
            let (rule, sub_path, derived) = match kept_sub_path(store, ns, injected_path) {
                Some(kept) => {
                    let kept = checked(SubPathSource::Recorded, store, Cow::Borrowed(kept))?;
                    // What the rules give today, for a warning when it differs.
                    let derived = sub_path(pod, store, annotations)
                        .ok()
                        .map(|(_, today)| today)
                        .filter(|today| *today != kept);
                    (SubPathSource::Recorded, kept, derived)
                }
                None => {
                    let (rule, path) = sub_path(pod, store, annotations)?;
                    (rule, path, None)
                }
            };
            let base = store.path().trim_end_matches('/');
            let path = format!("{base}/{sub_path}");
            Some(Outputs {
                store,
                sub_path,
                path,
                choice,
                rule,
                derived,
            })
        }
    };

    let containers = match raw.containers {
        None => None,
        Some(list) if list.is_empty() => return Err(SelectionError::NoContainers),
        Some(list) => {
            // Hashed: a pod of n containers naming n of them costs O(n),
            // not the n² of a scan per name; the set is of the names
            // listed, so the pod's own names are never collected.
            let mut unseen: HashSet<&str> = list.iter().map(String::as_str).collect();
            for name in container_names.clone() {
                unseen.remove(name);
            }
            if let Some(name) = list.iter().find(|n| unseen.contains(n.as_str())) {
                return Err(SelectionError::UnknownContainer {
                    name: clip(name),
                    known: crate::text::clip_list(container_names.clone(), container_names.count()),
                });
            }
            Some(list.into_iter().collect())
        }
    };

    Ok(Selection {
        data,
        data_by_default,
        outputs,
        containers,
    })
}

/// JSON first when it looks like JSON (the common, fast case), else YAML;
/// YAML's message is the one reported, since JSON is YAML.
fn parse(text: &str) -> Result<RawSelection, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(RawSelection::default());
    }
    if trimmed.starts_with('{') {
        if let Ok(raw) = serde_json::from_str(trimmed) {
            return Ok(raw);
        }
    }
    match serde_yaml::from_str::<Option<RawSelection>>(text) {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        // serde names the Rust type; say what the annotation needs.
        Err(e) => Err(clip(&e.to_string().replace(
            "struct RawSelection",
            "a mapping with data, outputs and containers",
        ))),
    }
}

fn lookup<'c>(
    config: &'c Config,
    role: Role,
    name: &str,
    namespace: &str,
    available: &dyn Fn() -> String,
) -> Result<&'c Store, SelectionError> {
    match config.stores(role).get(name) {
        Some(store) if store.available_in(namespace) => Ok(store),
        Some(_) => Err(SelectionError::NotAvailable {
            role,
            name: clip(name),
            namespace: clip(namespace),
            available: available(),
        }),
        None => {
            let hint = match config.store(name) {
                Some(other) => format!(", it is {} store", article(other.role())),
                None => String::new(),
            };
            Err(SelectionError::UnknownStore {
                role,
                name: clip(name),
                hint,
                available: available(),
            })
        }
    }
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Data => "a data",
        Role::Outputs => "an outputs",
    }
}

/// "Stores available in namespace "x": data: a, b; outputs: c", each list
/// clipped: under a config of thousands of stores a denial stays short, and
/// only the names shown are walked.
fn available_stores(config: &Config, namespace: &str) -> String {
    let list = |role| {
        crate::text::clip_list(
            config.available(role, namespace).map(Store::name),
            config.available_count(role, namespace),
        )
    };
    format!(
        "Stores available in namespace {:?}: data: {}; outputs: {}",
        clip(namespace),
        list(Role::Data),
        list(Role::Outputs)
    )
}

pub mod kubelet;
mod sub_path;

pub use sub_path::SubPathSource;
use sub_path::{checked, kept_sub_path, sub_path};

#[cfg(test)]
mod tests;
