//! From the pod's view and its resolved selection to the JSON Patch that
//! injects the stores (SPEC §4, §5). Pure.
//!
//! The patch only *adds*: it targets the raw object with pointers built from
//! tokens (annotation keys hold `/`), adds a missing parent list or map before
//! its children, and skips anything already present with the same value so
//! that admitting the patched pod again yields no patch. Something of ours
//! already present with a *different* value is a conflict, never overwritten.

use std::collections::{BTreeMap, HashMap};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::Serialize;
use serde_json::{json, Value};

use crate::bounds::Estimate;
use crate::config::{Backend, Provider, Store};
use crate::k8s;
use crate::names::{self, clip};
use crate::pod::{Container, Env, Mount, PodView};
use crate::selection::Selection;
use crate::vocabulary::{
    ANNOTATION_INJECTED, ANNOTATION_PERSISTENCE, ENV_ACCESS_KEYS, ENV_DATA_PATHS,
    ENV_GOOGLE_CREDENTIALS, ENV_OUTPUTS_PATH, GCS_CREDENTIALS_DIR, GCS_CREDENTIALS_VOLUME,
};

/// Something of ours the pod already has with a different value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A mount at one of our paths that is not ours.
    #[error("container {container:?}: volumeMounts already has {path:?} (volume {existing:?}), where {what} must be mounted; remove that mount, or leave the store out of annotation polyaxon.com/persistence")]
    MountPath {
        /// The container.
        container: String,
        /// The mount path.
        path: String,
        /// The volume the pod mounts there.
        existing: String,
        /// e.g. `data store "data1"`.
        what: String,
    },
    /// An env var of ours set to another value.
    #[error("container {container:?}: env {name} is already set to a different value; the webhook sets it to {ours} and never overwrites a pod's own value, so remove it from the pod")]
    Env {
        /// The container.
        container: String,
        /// The variable.
        name: String,
        /// What the webhook would set, described.
        ours: String,
    },
    /// A pod volume with our volume's name but other content.
    #[error("spec.volumes already has a volume named {name:?} that differs from the one the webhook adds for {what}; rename the pod's volume")]
    Volume {
        /// The volume name.
        name: String,
        /// e.g. `data store "data1"`.
        what: String,
    },
    /// A pod mount of a volume the webhook adds (or keeps) in this review,
    /// other than exactly the mount the webhook adds: with it a pod could
    /// reach the whole outputs store, another run's directory, or write to
    /// a read-only store (SPEC §5).
    #[error("container {container:?}: volumeMounts mounts the webhook's volume {volume:?} ({what}) at {mount}; {why}, so remove that mount")]
    ForeignMount {
        /// The container.
        container: String,
        /// The pod's mount: its path, then e.g. ` with subPath "other-run"`
        /// and ` read-write` when the store is read-only.
        mount: String,
        /// The volume.
        volume: String,
        /// e.g. `outputs store "outputs1"`.
        what: String,
        /// What the webhook adds instead.
        why: String,
    },
    /// Two of the selected stores would mount at the same path.
    #[error("{first} and {second} would both be mounted at {path:?}; change the outputs sub-path or leave one store out of annotation polyaxon.com/persistence")]
    OwnMounts {
        /// The path.
        path: String,
        /// One store.
        first: String,
        /// The other.
        second: String,
    },
}

/// A mount the webhook adds to each targeted container.
struct WantMount {
    what: String,
    volume: String,
    path: String,
    sub_path: Option<String>,
    read_only: bool,
    json: Value,
}

/// An env var the webhook adds to each targeted container.
struct WantEnv {
    name: String,
    value: EnvValue,
    json: Value,
}

/// A pod volume the webhook adds.
struct WantVolume {
    name: String,
    what: String,
    json: Value,
}

enum EnvValue {
    Plain(String),
    Secret { secret: String, key: String },
}

/// Everything the selection asks for, before looking at the pod, indexed so
/// that diffing a container costs one lookup per item the container has:
/// linear in the pod, whatever the number of selected stores.
pub struct Wanted {
    volumes: Vec<WantVolume>,
    mounts: Vec<WantMount>,
    env: Vec<WantEnv>,
    annotation: String,
    /// volume name -> index in `volumes`
    volume_index: Index,
    /// volume name -> index in `mounts` (one mount per volume)
    mount_by_volume: Index,
    /// mount path -> index in `mounts`
    mount_by_path: Index,
    /// env var name -> index in `env`
    env_index: Index,
    /// Serialised size of one container's mounts and env vars as values.
    item_bytes: u64,
    /// Serialised size of the volumes and the annotation, as operations.
    shared_bytes: u64,
}

/// The longest pointer and wrapping of the annotation's operation:
/// `/metadata/annotations/<key>` and `{"annotations":{"<key>":...}}`.
const ANNOTATION_OP_BYTES: u64 = ("/metadata/annotations/".len()
    + ANNOTATION_INJECTED.len()
    + r#"{"annotations":{"":}}"#.len()) as u64;

/// Up to this many names are looked up by a scan: no allocation and no
/// hashing, which is what an ordinary review (a handful of stores) needs.
const SCAN_AT_MOST: usize = 16;

/// Positions by name: a scan when there are few, a hash map when there are
/// many, so that a container costs one cheap lookup per item it has,
/// whatever the number of selected stores.
enum Index {
    Scan(usize),
    Hashed(HashMap<String, usize>),
}

impl Index {
    /// The index of `keys`; the first of equal keys wins.
    fn new<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> Index {
        if keys.len() <= SCAN_AT_MOST {
            return Index::Scan(keys.len());
        }
        let mut map = HashMap::with_capacity(keys.len());
        for (i, k) in keys.enumerate() {
            map.entry(k.to_owned()).or_insert(i);
        }
        Index::Hashed(map)
    }

    /// The position of `key`, where `key_of(i)` is the key at position `i`.
    fn find<'a>(&self, key: &str, key_of: impl Fn(usize) -> &'a str) -> Option<usize> {
        match self {
            Index::Scan(n) => (0..*n).find(|&i| key_of(i) == key),
            Index::Hashed(map) => map.get(key).copied(),
        }
    }
}

impl Wanted {
    fn volume_named(&self, name: &str) -> Option<usize> {
        self.volume_index.find(name, |i| &self.volumes[i].name)
    }

    fn mount_of_volume(&self, volume: &str) -> Option<usize> {
        self.mount_by_volume
            .find(volume, |i| &self.mounts[i].volume)
    }

    fn mount_at(&self, path: &str) -> Option<usize> {
        self.mount_by_path.find(path, |i| &self.mounts[i].path)
    }

    fn env_named(&self, name: &str) -> Option<usize> {
        self.env_index.find(name, |i| &self.env[i].name)
    }
}

/// Serialised overhead of one `add` operation around its path and value:
/// `{"op":"add","path":"","value":}` and the `,` between operations.
const OP_BYTES: u64 = r#"{"op":"add","path":"","value":},"#.len() as u64;
/// The longest pointer to a container's list item, without the index:
/// `/spec/initContainers/` + `/volumeMounts/-`.
const CONTAINER_POINTER_BYTES: u64 = "/spec/initContainers//volumeMounts/-".len() as u64;

impl Wanted {
    /// An upper bound on the patch for `containers` targeted containers, the
    /// last of which has index `max_index` in its list. Independent of what
    /// the pod already has, so a re-admitted pod gets the same estimate.
    pub fn estimate(&self, containers: usize, max_index: usize) -> Estimate {
        let containers = containers as u64;
        let per_container = (self.mounts.len() + self.env.len()) as u64;
        let index_digits = max_index.to_string().len() as u64;
        let per_item = OP_BYTES + CONTAINER_POINTER_BYTES + index_digits;
        let container_bytes = per_item * per_container + self.item_bytes;
        Estimate {
            containers,
            per_container,
            items: containers.saturating_mul(per_container),
            bytes: containers
                .saturating_mul(container_bytes)
                .saturating_add(self.shared_bytes)
                .saturating_add(2),
        }
    }
}

/// How many containers (and init containers) the selection targets, and the
/// highest index among them, for [`Wanted::estimate`].
pub fn targeted(pod: &PodView<'_>, selection: &Selection<'_>) -> (usize, usize) {
    let Some(spec) = &pod.spec else {
        return (0, 0);
    };
    let mut count = 0;
    let mut max_index = 0;
    for list in [&spec.init_containers, &spec.containers] {
        for (i, c) in list.iter().flatten().enumerate() {
            if selection.targets(&c.name) {
                count += 1;
                max_index = max_index.max(i);
            }
        }
    }
    (count, max_index)
}

/// The serialised size of `value`, counted without building the string.
fn json_len(value: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

/// The size of `s` as a JSON string: quotes, and escapes (`\"`, `\n`, ...
/// two bytes; other control characters `\u00XX`, six).
fn json_str_bytes(s: &str) -> u64 {
    let escapes: u64 = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    s.len() as u64 + 2 + escapes
}

impl WantMount {
    /// At least the size of [`WantMount::json`]: `{"mountPath":..,
    /// "name":..,"readOnly":true,"subPath":..}`.
    fn json_bytes(&self) -> u64 {
        let sub_path = self
            .sub_path
            .as_deref()
            .map_or(0, |s| 11 + json_str_bytes(s));
        let read_only = if self.read_only { 16 } else { 0 };
        22 + json_str_bytes(&self.path) + json_str_bytes(&self.volume) + sub_path + read_only
    }
}

impl WantEnv {
    /// At least the size of [`WantEnv::json`]: `{"name":..,"value":..}` or
    /// `{"name":..,"valueFrom":{"secretKeyRef":{"key":..,"name":..}}}`.
    fn json_bytes(&self) -> u64 {
        let value = match &self.value {
            EnvValue::Plain(v) => 10 + json_str_bytes(v),
            EnvValue::Secret { secret, key } => 47 + json_str_bytes(key) + json_str_bytes(secret),
        };
        8 + json_str_bytes(&self.name) + value
    }
}

#[derive(Serialize)]
struct Injected<'a> {
    data: Vec<&'a str>,
    outputs: Option<&'a str>,
    #[serde(rename = "outputsPath")]
    outputs_path: Option<&'a str>,
}

#[derive(Serialize)]
struct AccessKey<'a> {
    store: &'a str,
    secret_key: &'a str,
}

/// The patch for `pod`, or `None` when it already has everything. `wanted`
/// is [`wanted`] of the same selection (checked against the bounds first).
pub fn build(
    pod: &PodView<'_>,
    selection: &Selection<'_>,
    wanted: &Wanted,
) -> Result<Option<Patch>, Conflict> {
    let mut ops = Vec::new();

    annotation_ops(pod, &wanted.annotation, &mut ops);
    let Some(spec) = &pod.spec else {
        // No spec at all: nothing to mount into; API validation refuses the pod.
        return Ok(finish(ops));
    };
    volume_ops(spec.volumes.as_deref(), wanted, &mut ops)?;
    let lists = [
        ("initContainers", spec.init_containers.as_deref()),
        ("containers", spec.containers.as_deref()),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.unwrap_or_default().iter().enumerate() {
            if selection.targets(&c.name) {
                container_ops(list, i, c, wanted, &mut ops)?;
            } else {
                untargeted_mounts(c, wanted)?;
            }
        }
    }
    Ok(finish(ops))
}

fn finish(ops: Vec<PatchOperation>) -> Option<Patch> {
    (!ops.is_empty()).then_some(Patch(ops))
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn describe(store: &Store) -> String {
    format!("{} store {:?}", store.role(), store.name())
}

/// What the selection asks for, whatever the pod: volumes, the mounts and
/// env vars of each targeted container, the annotation. Costs what the
/// selection selects.
pub fn wanted(sel: &Selection<'_>) -> Result<Wanted, Conflict> {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut data_paths = BTreeMap::new();
    let mut access_keys: BTreeMap<&str, AccessKey> = BTreeMap::new();
    let mut secret_keys: BTreeMap<&str, &str> = BTreeMap::new();
    let mut gcs: Option<(&str, &str)> = None;

    for store in &sel.data {
        data_paths.insert(store.name(), store.path());
        match store.backend() {
            Backend::Volume {
                mount_path,
                read_only,
                volume,
                ..
            } => {
                volumes.push(WantVolume {
                    name: store.volume_name().to_owned(),
                    what: describe(store),
                    json: volume.clone(),
                });
                mounts.push(want_mount(
                    describe(store),
                    store.volume_name(),
                    mount_path,
                    None,
                    *read_only,
                ));
            }
            Backend::Cloud {
                provider,
                bucket,
                secret,
                secret_key,
            } => {
                access_keys.insert(
                    bucket,
                    AccessKey {
                        store: provider.as_str(),
                        secret_key,
                    },
                );
                secret_keys.insert(secret_key, secret);
                if *provider == Provider::Gcs && gcs.is_none() {
                    gcs = Some((secret, secret_key));
                }
            }
        }
    }
    if let Some(out) = &sel.outputs {
        match out.store.backend() {
            Backend::Volume { volume, .. } => {
                volumes.push(WantVolume {
                    name: out.store.volume_name().to_owned(),
                    what: describe(out.store),
                    json: volume.clone(),
                });
                mounts.push(want_mount(
                    describe(out.store),
                    out.store.volume_name(),
                    &out.path,
                    Some(&out.sub_path),
                    false,
                ));
            }
            Backend::Cloud {
                provider,
                secret,
                secret_key,
                ..
            } => {
                access_keys.insert(
                    &out.path,
                    AccessKey {
                        store: provider.as_str(),
                        secret_key,
                    },
                );
                secret_keys.insert(secret_key, secret);
                if *provider == Provider::Gcs {
                    // The outputs store's key wins: runs write there.
                    gcs = Some((secret, secret_key));
                }
            }
        }
    }

    let mut env = vec![want_env(
        ENV_DATA_PATHS,
        EnvValue::Plain(to_json(&data_paths)),
    )];
    if let Some(out) = &sel.outputs {
        env.push(want_env(
            ENV_OUTPUTS_PATH,
            EnvValue::Plain(out.path.clone()),
        ));
    }
    if !access_keys.is_empty() {
        env.push(want_env(
            ENV_ACCESS_KEYS,
            EnvValue::Plain(to_json(&access_keys)),
        ));
    }
    for (key, secret) in &secret_keys {
        env.push(want_env(
            key,
            EnvValue::Secret {
                secret: (*secret).to_owned(),
                key: (*key).to_owned(),
            },
        ));
    }
    if let Some((secret, key)) = gcs {
        let volume = k8s::volume(
            GCS_CREDENTIALS_VOLUME,
            k8s::VolumeSource::SecretKey { secret, key },
        );
        volumes.push(WantVolume {
            name: GCS_CREDENTIALS_VOLUME.to_owned(),
            what: "the GCS credentials".to_owned(),
            json: volume,
        });
        mounts.push(want_mount(
            "the GCS credentials".to_owned(),
            GCS_CREDENTIALS_VOLUME,
            GCS_CREDENTIALS_DIR,
            None,
            true,
        ));
        env.push(want_env(
            ENV_GOOGLE_CREDENTIALS,
            EnvValue::Plain(format!("{GCS_CREDENTIALS_DIR}/{key}")),
        ));
    }

    let mount_by_path = Index::new(mounts.iter().map(|m| m.path.as_str()));
    // Two of our mounts at one path: the first one found for each path is
    // the one the index holds.
    for (i, m) in mounts.iter().enumerate() {
        let first = mount_by_path.find(&m.path, |j| &mounts[j].path);
        if let Some(first) = first.filter(|first| *first != i) {
            return Err(Conflict::OwnMounts {
                path: clip(&m.path),
                first: mounts[first].what.clone(),
                second: m.what.clone(),
            });
        }
    }
    let mount_by_volume = Index::new(mounts.iter().map(|m| m.volume.as_str()));
    let volume_index = Index::new(volumes.iter().map(|v| v.name.as_str()));
    let env_index = Index::new(env.iter().map(|e| e.name.as_str()));

    let annotation = to_json(&Injected {
        data: sel.data.iter().map(|s| s.name()).collect(),
        outputs: sel.outputs.as_ref().map(|o| o.store.name()),
        outputs_path: sel.outputs.as_ref().map(|o| o.path.as_str()),
    });
    // From the strings, not by serialising each value again: this runs on
    // every review (it was 3 % of an ordinary review's instructions).
    let item_bytes = mounts.iter().map(WantMount::json_bytes).sum::<u64>()
        + env.iter().map(WantEnv::json_bytes).sum::<u64>();
    // `/spec/volumes/-` per volume; the annotation as the longest of its
    // three forms (the `/metadata` one wraps it in two maps).
    let shared_bytes = volumes
        .iter()
        .map(|v| OP_BYTES + "/spec/volumes/-".len() as u64 + json_len(&v.json))
        .sum::<u64>()
        + OP_BYTES
        + json_str_bytes(&annotation)
        + ANNOTATION_OP_BYTES;
    Ok(Wanted {
        volumes,
        mounts,
        env,
        annotation,
        volume_index,
        mount_by_volume,
        mount_by_path,
        env_index,
        item_bytes,
        shared_bytes,
    })
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps of strings always serialise")
}

fn want_mount(
    what: String,
    volume: &str,
    path: &str,
    sub_path: Option<&str>,
    read_only: bool,
) -> WantMount {
    WantMount {
        what,
        volume: volume.to_owned(),
        path: path.to_owned(),
        sub_path: sub_path.map(str::to_owned),
        read_only,
        json: k8s::volume_mount(volume, path, sub_path, read_only),
    }
}

fn want_env(name: &str, value: EnvValue) -> WantEnv {
    let json = match &value {
        EnvValue::Plain(v) => k8s::env_value(name, v),
        EnvValue::Secret { secret, key } => k8s::env_secret(name, secret, key),
    };
    WantEnv {
        name: name.to_owned(),
        value,
        json,
    }
}

fn annotation_ops(pod: &PodView<'_>, value: &str, ops: &mut Vec<PatchOperation>) {
    let meta = pod.metadata.as_ref();
    match meta.and_then(|m| m.annotations.as_ref()) {
        Some(a) if a.injected.as_deref() == Some(value) => {}
        Some(_) => ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations", ANNOTATION_INJECTED]),
            Value::String(value.to_owned()),
        )),
        None if meta.is_some() => ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            json!({ ANNOTATION_INJECTED: value }),
        )),
        None => ops.push(add(
            PointerBuf::from_tokens(["metadata"]),
            json!({ "annotations": { ANNOTATION_INJECTED: value } }),
        )),
    }
}

fn volume_ops(
    existing: Option<&[crate::pod::VolumeView<'_>]>,
    wanted: &Wanted,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), Conflict> {
    // One pass over the pod's volumes, one lookup each.
    let mut present = vec![false; wanted.volumes.len()];
    for v in existing.unwrap_or_default() {
        let Some(i) = wanted.volume_named(&v.name) else {
            continue;
        };
        let ours = &wanted.volumes[i];
        let same =
            serde_json::from_str::<Value>(v.raw.get()).is_ok_and(|have| covers(&have, &ours.json));
        if !same {
            return Err(Conflict::Volume {
                name: ours.name.clone(),
                what: ours.what.clone(),
            });
        }
        present[i] = true;
    }
    let missing = wanted
        .volumes
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
        .map(|(v, _)| v.json.clone())
        .collect();
    append(
        ["spec", "volumes"].as_slice(),
        existing.is_some(),
        missing,
        ops,
    );
    Ok(())
}

/// Whether `have` holds everything in `ours`. Extra fields are allowed: the
/// API server defaults our volumes after the patch (`hostPath.type: ""`,
/// `secret.defaultMode: 420`), so a re-admitted pod carries more than we
/// wrote and is still ours.
fn covers(have: &Value, ours: &Value) -> bool {
    match (have, ours) {
        (Value::Object(h), Value::Object(o)) => o
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| covers(hv, v))),
        (Value::Array(h), Value::Array(o)) => {
            h.len() == o.len() && h.iter().zip(o).all(|(h, o)| covers(h, o))
        }
        _ => have == ours,
    }
}

/// Adds `items` to the list at `path`: one `-` append each when the list
/// exists, else the whole list at once (its parent must exist first).
fn append(path: &[&str], exists: bool, items: Vec<Value>, ops: &mut Vec<PatchOperation>) {
    if items.is_empty() {
        return;
    }
    if exists {
        for item in items {
            let mut p = PointerBuf::from_tokens(path.iter().copied());
            p.push_back("-");
            ops.push(add(p, item));
        }
    } else {
        ops.push(add(
            PointerBuf::from_tokens(path.iter().copied()),
            Value::Array(items),
        ));
    }
}

fn container_ops(
    list: &str,
    index: usize,
    c: &Container<'_>,
    wanted: &Wanted,
    ops: &mut Vec<PatchOperation>,
) -> Result<(), Conflict> {
    let index = index.to_string();
    // One pass over the container's mounts, one lookup each: every mount of
    // one of our volumes must be exactly ours, and nothing else may sit at
    // one of our paths.
    let mut present = vec![false; wanted.mounts.len()];
    for h in c.volume_mounts.as_deref().unwrap_or_default() {
        let path = names::clean_path(&h.mount_path);
        if let Some(i) = wanted.mount_of_volume(&h.name) {
            let m = &wanted.mounts[i];
            let exact = path == m.path
                && h.sub_path.as_deref() == m.sub_path.as_deref()
                && h.read_only.unwrap_or(false) == m.read_only;
            if !exact {
                return Err(foreign_mount(c, h, m, true));
            }
            present[i] = true;
        } else if let Some(i) = wanted.mount_at(&path) {
            let m = &wanted.mounts[i];
            return Err(Conflict::MountPath {
                container: clip(&c.name),
                path: clip(&m.path),
                existing: clip(&h.name),
                what: m.what.clone(),
            });
        }
    }
    let mounts = wanted
        .mounts
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
        .map(|(m, _)| m.json.clone())
        .collect();
    append(
        &["spec", list, &index, "volumeMounts"],
        c.volume_mounts.is_some(),
        mounts,
        ops,
    );

    // Every occurrence of a name of ours counts: the runtime uses the last
    // one, so a first one that matches proves nothing (SPEC §5).
    let mut present = vec![false; wanted.env.len()];
    for h in c.env.as_deref().unwrap_or_default() {
        let Some(i) = wanted.env_named(&h.name) else {
            continue;
        };
        let e = &wanted.env[i];
        // The container's own GOOGLE_APPLICATION_CREDENTIALS wins (SPEC §4).
        if e.name != ENV_GOOGLE_CREDENTIALS && !same_env(h, &e.value) {
            return Err(Conflict::Env {
                container: clip(&c.name),
                name: e.name.clone(),
                ours: match &e.value {
                    EnvValue::Plain(v) => format!("{:?}", clip(v)),
                    EnvValue::Secret { secret, key } => {
                        format!("key {key:?} of secret {secret:?}")
                    }
                },
            });
        }
        present[i] = true;
    }
    let env = wanted
        .env
        .iter()
        .zip(&present)
        .filter(|(_, present)| !**present)
        .map(|(e, _)| e.json.clone())
        .collect();
    append(&["spec", list, &index, "env"], c.env.is_some(), env, ops);
    Ok(())
}

/// A container the selection leaves out may not mount our volumes at all:
/// `containers:` must not be a way around the sub-path.
fn untargeted_mounts(c: &Container<'_>, wanted: &Wanted) -> Result<(), Conflict> {
    for h in c.volume_mounts.as_deref().unwrap_or_default() {
        if let Some(i) = wanted.mount_of_volume(&h.name) {
            return Err(foreign_mount(c, h, &wanted.mounts[i], false));
        }
    }
    Ok(())
}

fn foreign_mount(c: &Container<'_>, h: &Mount<'_>, ours: &WantMount, targeted: bool) -> Conflict {
    let why = if targeted {
        let sub = match &ours.sub_path {
            Some(s) => format!(" with subPath {:?}", clip(s)),
            None => String::new(),
        };
        let ro = if ours.read_only { " read-only" } else { "" };
        format!(
            "only the webhook mounts it, at {:?}{sub}{ro}",
            clip(&ours.path)
        )
    } else {
        format!(
            "only the webhook mounts it, and only in the containers that annotation {ANNOTATION_PERSISTENCE} targets (containers:), which this one is not"
        )
    };
    let sub_path = h
        .sub_path
        .as_deref()
        .map(|s| format!(" with subPath {:?}", clip(s)))
        .unwrap_or_default();
    let read_write = if ours.read_only && !h.read_only.unwrap_or(false) {
        " read-write"
    } else {
        ""
    };
    Conflict::ForeignMount {
        container: clip(&c.name),
        mount: format!("{:?}{sub_path}{read_write}", clip(&h.mount_path)),
        volume: clip(&h.name),
        what: ours.what.clone(),
        why,
    }
}

fn same_env(have: &Env<'_>, ours: &EnvValue) -> bool {
    let secret_ref = have
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref());
    match ours {
        EnvValue::Plain(v) => {
            have.value.as_deref() == Some(v.as_str()) && have.value_from.is_none()
        }
        EnvValue::Secret { secret, key } => {
            have.value.as_deref().unwrap_or_default().is_empty()
                && secret_ref.is_some_and(|r| {
                    r.key == key.as_str() && r.name.as_deref() == Some(secret.as_str())
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::selection::{resolve, PodIdentity};

    const CONFIG: &str = r#"
data:
  data1: {mountPath: /data/1, hostPath: /d1, readOnly: true}
  data2: {mountPath: /data/2, existingClaim: d2, readOnly: true}
  data-gcs: {store: gcs, bucket: gs://data-bucket, secret: gcs-secret, secretKey: gcs-key.json}
  data-gcs2: {store: gcs, bucket: gs://data-bucket-2, secret: gcs-secret-2, secretKey: gcs-key-2.json}
  data-s3: {store: s3, bucket: s3://data-bucket, secret: s3-secret, secretKey: s3-key.json}
outputs:
  outputs1: {mountPath: /outputs/1, existingClaim: o1}
  outputs-gcs: {store: gcs, bucket: gs://outputs-bucket/, secret: gcs-out, secretKey: gcs-out.json}
  outputs-nested: {mountPath: /data}
defaultOutputs: outputs1
"#;

    /// Patches `pod` (JSON) with `selection` (the annotation) and returns the
    /// patch and the patched pod, or the conflict.
    fn run(pod: &str, selection: Option<&str>) -> Result<(Vec<PatchOperation>, Value), Conflict> {
        run_with(CONFIG, pod, selection)
    }

    fn run_with(
        config: &str,
        pod: &str,
        selection: Option<&str>,
    ) -> Result<(Vec<PatchOperation>, Value), Conflict> {
        let config = Config::from_yaml(config).expect("valid test config");
        let mut doc: Value = serde_json::from_str(pod).expect("test pod is JSON");
        if let Some(sel) = selection {
            let meta = doc["metadata"].as_object_mut().expect("metadata");
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            ann["polyaxon.com/persistence"] = Value::String(sel.to_owned());
        }
        let text = doc.to_string();
        let view: PodView = serde_json::from_str(&text).expect("view");
        let names = view.container_names();
        let annotations = view.annotations();
        let injected = annotations.injected_outputs_path();
        let identity = PodIdentity {
            namespace: "ns",
            name: Some("pod"),
            generate_name: None,
            uid: "u",
        };
        let sel = resolve(&config, identity, &annotations, injected.as_deref(), &names)
            .expect("selection resolves");
        let wanted = wanted(&sel)?;
        let patch = build(&view, &sel, &wanted)?;
        if let Some(p) = &patch {
            let (containers, max_index) = targeted(&view, &sel);
            let estimate = wanted.estimate(containers, max_index);
            let bytes = serde_json::to_vec(p).expect("patch").len() as u64;
            assert!(
                bytes <= estimate.bytes,
                "estimate {estimate:?} < {bytes} bytes"
            );
        }
        let ops = patch.map(|p| p.0).unwrap_or_default();
        json_patch::patch(&mut doc, &ops).expect("patch applies");
        Ok((ops, doc))
    }

    fn env_of(pod: &Value, list: &str, i: usize) -> BTreeMap<String, Value> {
        pod["spec"][list][i]["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .map(|e| (e["name"].as_str().unwrap_or_default().to_owned(), e.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn mount_paths(pod: &Value, list: &str, i: usize) -> Vec<String> {
        pod["spec"][list][i]["volumeMounts"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["mountPath"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    const BARE: &str = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main"}]}}"#;

    #[test]
    fn bare_pod_gets_parents_first() {
        let config = "data: {data1: {mountPath: /data/1, hostPath: /d1, readOnly: true}}\noutputs: {outputs1: {mountPath: /outputs/1, existingClaim: o1}}";
        let (ops, pod) = run_with(config, BARE, None).expect("ok");
        let paths: Vec<String> = ops
            .iter()
            .map(|op| match op {
                PatchOperation::Add(a) => a.path.to_string(),
                other => panic!("only adds expected, got {other:?}"),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/metadata/annotations",
                "/spec/volumes",
                "/spec/containers/0/volumeMounts",
                "/spec/containers/0/env"
            ]
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"],
            json!([
                {"name": "pw-data1", "mountPath": "/data/1", "readOnly": true},
                {"name": "pw-outputs1", "mountPath": "/outputs/1/ns/pod", "subPath": "ns/pod"}
            ])
        );
        let env = env_of(&pod, "containers", 0);
        assert_eq!(
            env[ENV_DATA_PATHS]["value"],
            json!(r#"{"data1":"/data/1"}"#)
        );
        assert_eq!(env[ENV_OUTPUTS_PATH]["value"], json!("/outputs/1/ns/pod"));
        assert!(
            !env.contains_key(ENV_ACCESS_KEYS),
            "no cloud store, no access keys"
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION_INJECTED],
            json!(r#"{"data":["data1"],"outputs":"outputs1","outputsPath":"/outputs/1/ns/pod"}"#)
        );
    }

    #[test]
    fn existing_lists_are_appended_and_keys_escaped() {
        let pod = r#"{"metadata":{"name":"pod","annotations":{"a/b~c":"x"}},
            "spec":{"volumes":[{"name":"own","emptyDir":{}}],
            "containers":[{"name":"main","env":[{"name":"A","value":"1"}],"volumeMounts":[{"name":"own","mountPath":"/own"}]}]}}"#;
        let (ops, out) = run(pod, Some("data: [data2]")).expect("ok");
        let first = serde_json::to_value(&ops[0]).expect("op");
        assert_eq!(
            first["path"],
            json!("/metadata/annotations/polyaxon.com~1persistence-injected")
        );
        assert_eq!(out["metadata"]["annotations"]["a/b~c"], json!("x"));
        assert_eq!(out["spec"]["volumes"][0]["name"], json!("own"));
        assert_eq!(
            out["spec"]["volumes"][1],
            json!({"name": "pw-data2", "persistentVolumeClaim": {"claimName": "d2", "readOnly": true}})
        );
        assert_eq!(
            mount_paths(&out, "containers", 0),
            ["/own", "/data/2", "/outputs/1/ns/pod"]
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"][0],
            json!({"name": "A", "value": "1"})
        );
    }

    #[test]
    fn cloud_env_and_gcs_credentials() {
        let (_, pod) = run(
            BARE,
            Some("data: [data-gcs2, data-gcs, data-s3, data1]\noutputs: outputs-gcs"),
        )
        .expect("ok");
        let env = env_of(&pod, "containers", 0);
        assert_eq!(
            env[ENV_DATA_PATHS]["value"],
            json!(
                r#"{"data-gcs":"gs://data-bucket","data-gcs2":"gs://data-bucket-2","data-s3":"s3://data-bucket","data1":"/data/1"}"#
            )
        );
        assert_eq!(
            env[ENV_OUTPUTS_PATH]["value"],
            json!("gs://outputs-bucket/ns/pod")
        );
        let keys: Value =
            serde_json::from_str(env[ENV_ACCESS_KEYS]["value"].as_str().expect("string"))
                .expect("access keys are JSON");
        assert_eq!(
            keys,
            json!({
                "gs://data-bucket": {"store": "gcs", "secret_key": "gcs-key.json"},
                "gs://data-bucket-2": {"store": "gcs", "secret_key": "gcs-key-2.json"},
                "s3://data-bucket": {"store": "s3", "secret_key": "s3-key.json"},
                "gs://outputs-bucket/ns/pod": {"store": "gcs", "secret_key": "gcs-out.json"},
            })
        );
        for (key, secret) in [
            ("gcs-key.json", "gcs-secret"),
            ("gcs-key-2.json", "gcs-secret-2"),
            ("s3-key.json", "s3-secret"),
            ("gcs-out.json", "gcs-out"),
        ] {
            assert_eq!(
                env[key]["valueFrom"],
                json!({"secretKeyRef": {"name": secret, "key": key}}),
                "{key}"
            );
        }
        // The outputs store's key is the default credential.
        assert_eq!(
            env[ENV_GOOGLE_CREDENTIALS]["value"],
            json!("/var/run/secrets/polyaxon.com/gcs/gcs-out.json")
        );
        let creds = pod["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == GCS_CREDENTIALS_VOLUME))
            .expect("credentials volume");
        assert_eq!(
            creds["secret"],
            json!({"secretName": "gcs-out", "items": [{"key": "gcs-out.json", "path": "gcs-out.json"}]})
        );
        assert!(mount_paths(&pod, "containers", 0).contains(&GCS_CREDENTIALS_DIR.to_owned()));
    }

    #[test]
    fn first_gcs_data_store_by_name_is_the_default_credential() {
        let (_, pod) =
            run(BARE, Some("data: [data-gcs2, data-gcs]\noutputs: outputs1")).expect("ok");
        let env = env_of(&pod, "containers", 0);
        assert_eq!(
            env[ENV_GOOGLE_CREDENTIALS]["value"],
            json!("/var/run/secrets/polyaxon.com/gcs/gcs-key.json")
        );
    }

    #[test]
    fn no_stores_still_sets_empty_data_paths() {
        let (_, doc) = run_with("data:\noutputs:\n", BARE, None).expect("patched");
        assert_eq!(
            doc["spec"]["containers"][0]["env"],
            json!([{"name": ENV_DATA_PATHS, "value": "{}"}])
        );
        assert!(
            doc["spec"].get("volumes").is_none(),
            "no volume stores, no volumes list"
        );
    }

    #[test]
    fn containers_subset_and_init_containers() {
        let pod = r#"{"metadata":{"name":"pod"},"spec":{"initContainers":[{"name":"init"}],"containers":[{"name":"main"},{"name":"side"}]}}"#;
        let (_, all) = run(pod, Some("data: [data1]")).expect("ok");
        assert!(env_of(&all, "initContainers", 0).contains_key(ENV_DATA_PATHS));
        assert!(env_of(&all, "containers", 1).contains_key(ENV_DATA_PATHS));
        let (_, some) = run(pod, Some("data: [data1]\ncontainers: [init, main]")).expect("ok");
        assert!(env_of(&some, "initContainers", 0).contains_key(ENV_DATA_PATHS));
        assert!(env_of(&some, "containers", 0).contains_key(ENV_DATA_PATHS));
        assert_eq!(some["spec"]["containers"][1], json!({"name": "side"}));
    }

    #[test]
    fn second_admission_is_a_no_op() {
        for sel in [
            "data: [data1, data-gcs]\noutputs: outputs-gcs",
            "data: []",
            "outputs: outputs1",
        ] {
            let (_, once) = run(BARE, Some(sel)).expect("ok");
            let (ops, twice) = run(&once.to_string(), None).expect("ok");
            assert!(ops.is_empty(), "{sel}: second patch {ops:?}");
            assert_eq!(once, twice);
        }
    }

    #[test]
    fn conflicts_are_denied_with_container_and_field() {
        let cases = [
            (
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","volumeMounts":[{"name":"mine","mountPath":"/data/1/"}]}]}}"#,
                "data: [data1]",
                "container \"main\": volumeMounts already has \"/data/1\" (volume \"mine\"), where data store \"data1\" must be mounted",
            ),
            (
                // Regression (fuzz: review_structured-double-slash-mount).
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","volumeMounts":[{"name":"mine","mountPath":"/data//1/./"}]}]}}"#,
                "data: [data1]",
                "volumeMounts already has \"/data/1\" (volume \"mine\")",
            ),
            (
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"POLYAXON_RUN_OUTPUTS_PATH","value":"/elsewhere"}]}]}}"#,
                "data: []",
                "container \"main\": env POLYAXON_RUN_OUTPUTS_PATH is already set to a different value; the webhook sets it to \"/outputs/1/ns/pod\"",
            ),
            (
                r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"gcs-key.json","valueFrom":{"secretKeyRef":{"name":"other","key":"gcs-key.json"}}}]}]}}"#,
                "data: [data-gcs]",
                "env gcs-key.json is already set to a different value; the webhook sets it to key \"gcs-key.json\" of secret \"gcs-secret\"",
            ),
            (
                r#"{"metadata":{"name":"pod"},"spec":{"volumes":[{"name":"pw-data1","emptyDir":{}}],"containers":[{"name":"main"}]}}"#,
                "data: [data1]",
                "spec.volumes already has a volume named \"pw-data1\"",
            ),
            (BARE, "data: [data1]\noutputs: outputs-nested", ""),
        ];
        for (pod, sel, want) in cases {
            let result = run(pod, Some(sel));
            if want.is_empty() {
                // /data (outputs-nested + sub-path) does not collide with /data/1.
                assert!(result.is_ok(), "{sel}: {result:?}");
                continue;
            }
            let err = result.expect_err(sel).to_string();
            assert!(err.contains(want), "{sel}: {err}");
        }
    }

    /// A pod with one container `main` (targeted) and `side`, with `main`'s
    /// and `side`'s mounts as given.
    fn two_containers(main_mounts: Value, side_mounts: Value) -> String {
        json!({"metadata": {"name": "pod"}, "spec": {"containers": [
            {"name": "main", "volumeMounts": main_mounts},
            {"name": "side", "volumeMounts": side_mounts},
        ]}})
        .to_string()
    }

    #[test]
    fn the_webhooks_volumes_are_mounted_only_as_the_webhook_mounts_them() {
        let cases: Vec<(&str, String, &str, &[&str])> = vec![
            (
                "whole outputs store, no subPath",
                two_containers(json!([{"name": "pw-outputs1", "mountPath": "/all-outputs"}]), json!([])),
                "data: []",
                &[
                    "container \"main\": volumeMounts mounts the webhook's volume \"pw-outputs1\" (outputs store \"outputs1\") at \"/all-outputs\";",
                    "only the webhook mounts it, at \"/outputs/1/ns/pod\" with subPath \"ns/pod\"",
                ],
            ),
            (
                "another run's subPath",
                two_containers(json!([{"name": "pw-outputs1", "mountPath": "/theirs", "subPath": "ns/other-run"}]), json!([])),
                "data: []",
                &["mounts the webhook's volume \"pw-outputs1\" (outputs store \"outputs1\") at \"/theirs\" with subPath \"ns/other-run\""],
            ),
            (
                "another run's subPath at our own path",
                two_containers(json!([{"name": "pw-outputs1", "mountPath": "/outputs/1/ns/pod", "subPath": "ns/other-run"}]), json!([])),
                "data: []",
                &["at \"/outputs/1/ns/pod\" with subPath \"ns/other-run\""],
            ),
            (
                "read-only data store mounted read-write",
                two_containers(json!([{"name": "pw-data1", "mountPath": "/data/1"}]), json!([])),
                "data: [data1]",
                &[
                    "mounts the webhook's volume \"pw-data1\" (data store \"data1\") at \"/data/1\" read-write",
                    "only the webhook mounts it, at \"/data/1\" read-only",
                ],
            ),
            (
                "sidecar excluded by containers:",
                two_containers(json!([]), json!([{"name": "pw-outputs1", "mountPath": "/outputs/1/ns/pod", "subPath": "ns/pod"}])),
                "data: []\ncontainers: [main]",
                &[
                    "container \"side\": volumeMounts mounts the webhook's volume \"pw-outputs1\"",
                    "only in the containers that annotation polyaxon.com/persistence targets (containers:), which this one is not",
                ],
            ),
            (
                "the GCS credentials volume elsewhere",
                two_containers(json!([{"name": "pw--gcs-credentials", "mountPath": "/keys"}]), json!([])),
                "data: [data-gcs]",
                &["the webhook's volume \"pw--gcs-credentials\" (the GCS credentials) at \"/keys\""],
            ),
            (
                "init container too",
                json!({"metadata": {"name": "pod"}, "spec": {
                    "initContainers": [{"name": "init", "volumeMounts": [{"name": "pw-data2", "mountPath": "/d2", "readOnly": true}]}],
                    "containers": [{"name": "main"}]}}).to_string(),
                "data: [data2]",
                &["container \"init\": volumeMounts mounts the webhook's volume \"pw-data2\" (data store \"data2\") at \"/d2\""],
            ),
        ];
        for (what, pod, sel, fragments) in cases {
            let err = run(&pod, Some(sel)).expect_err(what);
            assert!(
                matches!(err, Conflict::ForeignMount { .. }),
                "{what}: {err}"
            );
            let err = err.to_string();
            for f in fragments {
                assert!(err.contains(f), "{what}: {f:?} not in {err}");
            }
        }
        // A volume of a store this review does not select is the pod's own.
        let own = two_containers(
            json!([]),
            json!([{"name": "pw-data1", "mountPath": "/mine"}]),
        );
        let own = own.replace(
            r#""spec":{"#,
            r#""spec":{"volumes":[{"name":"pw-data1","emptyDir":{}}],"#,
        );
        assert!(
            run(&own, Some("data: [data2]")).is_ok(),
            "not ours in this review"
        );
        // Reinvocation: the pod already carries exactly our mounts.
        let sel = "data: [data1, data-gcs]\ncontainers: [main]";
        let (_, once) = run(&two_containers(json!([]), json!([])), Some(sel)).expect("patched");
        let (ops, _) = run(&once.to_string(), None).expect("re-admitted");
        assert!(ops.is_empty(), "{ops:?}");
    }

    #[test]
    fn every_occurrence_of_an_env_var_of_ours_must_match() {
        let (_, once) = run(BARE, Some("data: [data1]")).expect("patched");
        let ours = once["spec"]["containers"][0]["env"][1].clone();
        assert_eq!(ours["name"], ENV_OUTPUTS_PATH);
        let with_env = |env: Value| {
            let mut pod = once.clone();
            pod["spec"]["containers"][0]["env"] = env;
            pod.to_string()
        };
        let data = once["spec"]["containers"][0]["env"][0].clone();
        let other = json!({"name": ENV_OUTPUTS_PATH, "value": "/elsewhere"});
        let cases = [
            (
                "ours then another: the runtime uses the last",
                json!([data, ours, other]),
                false,
            ),
            ("another then ours", json!([data, other, ours]), false),
            ("ours twice, same value", json!([data, ours, ours]), true),
        ];
        for (what, env, allowed) in cases {
            let result = run(&with_env(env), None);
            match (result, allowed) {
                (Ok((ops, _)), true) => assert!(ops.is_empty(), "{what}: {ops:?}"),
                (Err(e), false) => assert!(
                    e.to_string().contains("container \"main\": env POLYAXON_RUN_OUTPUTS_PATH is already set to a different value"),
                    "{what}: {e}"
                ),
                (got, _) => panic!("{what}: {got:?}"),
            }
        }
        // GOOGLE_APPLICATION_CREDENTIALS twice, any values: the container's own.
        let pod = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"GOOGLE_APPLICATION_CREDENTIALS","value":"/a"},{"name":"GOOGLE_APPLICATION_CREDENTIALS","value":"/b"}]}]}}"#;
        assert!(run(pod, Some("data: [data-gcs]")).is_ok());
    }

    #[test]
    fn conflict_messages_are_clipped() {
        let long = "c".repeat(100_000);
        let pod = json!({"metadata": {"name": "pod"}, "spec": {"containers": [
            {"name": long, "volumeMounts": [{"name": "v".repeat(100_000), "mountPath": "/data/1"}]}]}});
        let err = run(&pod.to_string(), Some("data: [data1]"))
            .expect_err("conflict")
            .to_string();
        assert!(err.contains("(100000 bytes)"), "{err}");
        assert!(err.len() < 1024, "{} bytes", err.len());
    }

    #[test]
    fn diffing_is_linear_in_the_pod() {
        // Not a timing: a container with 20,000 mounts and 20,000 env vars
        // against every wanted item would be a scan per item before; now one
        // lookup per mount and env var.
        let mounts: Vec<Value> = (0..20_000)
            .map(|i| json!({"name": format!("v{i}"), "mountPath": format!("/m/{i}")}))
            .collect();
        let env: Vec<Value> = (0..20_000)
            .map(|i| json!({"name": format!("E{i}"), "value": "x"}))
            .collect();
        let pod = json!({"metadata": {"name": "pod"}, "spec": {"containers": [
            {"name": "main", "volumeMounts": mounts, "env": env}]}});
        let (ops, out) = run(
            &pod.to_string(),
            Some("data: [data1, data2, data-gcs, data-s3]"),
        )
        .expect("patched");
        assert!(!ops.is_empty());
        assert_eq!(mount_paths(&out, "containers", 0).len(), 20_000 + 4);
    }

    #[test]
    fn item_sizes_from_strings_are_the_serialised_sizes() {
        let odd = "q\"uo\\te\n\u{1}\u{7f}ünï/~";
        for sub in [None, Some("a/b"), Some(odd)] {
            for read_only in [false, true] {
                for (volume, path) in [("pw-data1", "/data/1"), (odd, odd)] {
                    let m = want_mount(String::new(), volume, path, sub, read_only);
                    let (est, real) = (m.json_bytes(), json_len(&m.json));
                    assert_eq!(est, real, "{}", m.json);
                }
            }
        }
        for value in [
            EnvValue::Plain(String::new()),
            EnvValue::Plain(odd.to_owned()),
            EnvValue::Secret {
                secret: "s".into(),
                key: odd.into(),
            },
        ] {
            let e = want_env("POLYAXON_RUN_DATA_PATHS", value);
            let (est, real) = (e.json_bytes(), json_len(&e.json));
            assert_eq!(est, real, "{}", e.json);
        }
        assert_eq!(json_str_bytes(odd), json_len(&Value::String(odd.into())));
    }

    #[test]
    fn the_estimate_bounds_the_patch() {
        for sel in [
            "data: [data1, data2, data-gcs, data-gcs2, data-s3]\noutputs: outputs-gcs",
            "data: []",
            "outputs: outputs1",
        ] {
            // `run_with` asserts the patch is within the estimate.
            let many: Vec<Value> = (0..120).map(|i| json!({"name": format!("c{i}")})).collect();
            let pod = json!({"metadata": {"name": "pod"}, "spec": {"initContainers": many.clone(), "containers": many}});
            let (ops, _) = run(&pod.to_string(), Some(sel)).expect("patched");
            assert!(ops.len() > 240, "{sel}");
        }
    }

    #[test]
    fn own_mounts_colliding_are_denied() {
        let config = "data: {d: {mountPath: /o/ns/pod}}\noutputs: {o: {mountPath: /o}}";
        let err = run_with(config, BARE, None)
            .expect_err("collision")
            .to_string();
        assert!(
            err.contains(
                "data store \"d\" and outputs store \"o\" would both be mounted at \"/o/ns/pod\""
            ),
            "{err}"
        );
    }

    #[test]
    fn volumes_defaulted_by_the_api_server_are_still_ours() {
        let defaulted = r#"{"metadata":{"name":"pod"},"spec":{"volumes":[{"name":"pw-data1","hostPath":{"path":"/d1","type":""}}],"containers":[{"name":"main"}]}}"#;
        let (ops, _) = run(defaulted, Some("data: [data1]")).expect("defaults are not a conflict");
        let added_again = ops.iter().any(|op| {
            let op = serde_json::to_value(op).expect("op");
            op["path"] == "/spec/volumes/-" && op["value"]["name"] == "pw-data1"
        });
        assert!(!added_again, "the volume is added twice: {ops:?}");
        let other = defaulted.replace("/d1", "/elsewhere");
        let err = run(&other, Some("data: [data1]")).expect_err("another path is a conflict");
        assert!(matches!(err, Conflict::Volume { .. }), "{err}");
        assert!(covers(
            &json!({"a": [1, {"b": 2, "c": 3}]}),
            &json!({"a": [1, {"b": 2}]})
        ));
        assert!(!covers(&json!({"a": [1]}), &json!({"a": [1, 2]})));
        assert!(!covers(&json!({}), &json!({"a": null})));
    }

    #[test]
    fn own_google_credentials_are_kept() {
        let pod = r#"{"metadata":{"name":"pod"},"spec":{"containers":[{"name":"main","env":[{"name":"GOOGLE_APPLICATION_CREDENTIALS","value":"/mine.json"}]}]}}"#;
        let (_, out) = run(pod, Some("data: [data-gcs]")).expect("ok");
        let env = env_of(&out, "containers", 0);
        assert_eq!(env[ENV_GOOGLE_CREDENTIALS]["value"], json!("/mine.json"));
        let count = out["spec"]["containers"][0]["env"].as_array().map(|e| {
            e.iter()
                .filter(|e| e["name"] == ENV_GOOGLE_CREDENTIALS)
                .count()
        });
        assert_eq!(count, Some(1));
    }

    #[test]
    fn garbled_injected_annotation_is_replaced() {
        let pod = r#"{"metadata":{"name":"pod","annotations":{"polyaxon.com/persistence-injected":"garbage"}},"spec":{"containers":[{"name":"main"}]}}"#;
        let (_, out) = run(pod, Some("data: []")).expect("ok");
        assert_eq!(
            out["metadata"]["annotations"][ANNOTATION_INJECTED],
            json!(r#"{"data":[],"outputs":"outputs1","outputsPath":"/outputs/1/ns/pod"}"#)
        );
    }
}
