//! What the selection asks for, before looking at the pod: the volumes, the
//! mounts and env vars of each targeted container and the annotation
//! ([`Wanted`]), indexed for the diff, and the estimate of the patch's size
//! checked against the bounds before any per-container work.

mod estimate;
mod sdk_env;
mod volume_namer;

pub use estimate::targeted;
use estimate::OP_BYTES;
pub(super) use estimate::{json_len, json_str_bytes};
pub use sdk_env::default_store;
use sdk_env::sdk_env;
use volume_namer::VolumeNamer;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::{describe, Conflict};
use crate::config::{Backend, Provider, SdkKeys, Store};
use crate::k8s;
use crate::pod::VolumeView;
use crate::selection::Selection;
use crate::text::clip;
use crate::vocabulary::sdk_env_group;
use crate::vocabulary::{
    ANNOTATION_INJECTED, ENV_ACCESS_KEYS, ENV_AWS_ACCESS_KEY_ID, ENV_AWS_DEFAULT_REGION,
    ENV_AWS_ENDPOINT_URL_S3, ENV_AWS_REGION, ENV_AWS_SECRET_ACCESS_KEY, ENV_AWS_SESSION_TOKEN,
    ENV_AZURE_STORAGE_ACCOUNT_KEY, ENV_AZURE_STORAGE_ACCOUNT_NAME,
    ENV_AZURE_STORAGE_CONNECTION_STRING, ENV_DATA_PATHS, ENV_GOOGLE_CREDENTIALS, ENV_OUTPUTS_PATH,
    ENV_STORAGE_EMULATOR_HOST, GCS_CREDENTIALS_DIR, GCS_CREDENTIALS_VOLUME,
};

/// A mount the webhook adds to each targeted container.
pub(super) struct WantMount {
    pub(super) what: String,
    pub(super) volume: String,
    pub(super) path: String,
    pub(super) sub_path: Option<String>,
    pub(super) read_only: bool,
    pub(super) json: Value,
}

/// An env var the webhook adds to each targeted container.
pub(super) struct WantEnv {
    pub(super) name: String,
    pub(super) value: EnvValue,
    pub(super) json: Value,
    /// For the SDK variables (SPEC §7), their group in
    /// [`SDK_ENV_GROUPS`](crate::vocabulary::SDK_ENV_GROUPS): a container
    /// that sets any variable of the group keeps its own and gets none of
    /// the group, instead of a conflict.
    pub(super) group: Option<usize>,
}

/// A pod volume the webhook adds.
pub(super) struct WantVolume {
    pub(super) name: String,
    pub(super) json: Value,
}

pub(super) enum EnvValue {
    Plain(String),
    Secret { secret: String, key: String },
}

/// Everything the selection asks for, before looking at the pod, indexed so
/// that diffing a container costs one lookup per item the container has:
/// linear in the pod, whatever the number of selected stores.
pub struct Wanted {
    pub(super) volumes: Vec<WantVolume>,
    pub(super) mounts: Vec<WantMount>,
    pub(super) env: Vec<WantEnv>,
    pub(super) annotation: String,
    /// volume name -> index in `volumes`
    pub(super) volume_index: Index,
    /// volume name -> index in `mounts` (one mount per volume)
    pub(super) mount_by_volume: Index,
    /// mount path -> index in `mounts`
    pub(super) mount_by_path: Index,
    /// env var name -> index in `env`
    pub(super) env_index: Index,
    /// Whether any SDK variable is wanted (then a container's own ones are
    /// looked for).
    pub(super) has_sdk_env: bool,
    /// Serialised size of one container's mounts and env vars as values.
    pub(super) item_bytes: u64,
    /// Serialised size of the volumes and the annotation, as operations.
    pub(super) shared_bytes: u64,
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
pub(super) enum Index {
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
    /// What each targeted container gets, in words (for `explain`): the
    /// mounts (path, volume, options) and the env var names.
    pub fn describe(&self) -> (Vec<String>, Vec<String>) {
        let mounts = self
            .mounts
            .iter()
            .map(|m| {
                let mut d = format!("{} (volume {}", m.path, m.volume);
                if let Some(sub) = &m.sub_path {
                    d.push_str(&format!(", subPath {sub}"));
                }
                if m.read_only {
                    d.push_str(", read-only");
                }
                d.push_str(&format!("; {})", m.what));
                d
            })
            .collect();
        let env = self.env.iter().map(|e| e.name.clone()).collect();
        (mounts, env)
    }

    pub(super) fn volume_named(&self, name: &str) -> Option<usize> {
        self.volume_index.find(name, |i| &self.volumes[i].name)
    }

    pub(super) fn mount_of_volume(&self, volume: &str) -> Option<usize> {
        self.mount_by_volume
            .find(volume, |i| &self.mounts[i].volume)
    }

    pub(super) fn mount_at(&self, path: &str) -> Option<usize> {
        self.mount_by_path.find(path, |i| &self.mounts[i].path)
    }

    pub(super) fn env_named(&self, name: &str) -> Option<usize> {
        self.env_index.find(name, |i| &self.env[i].name)
    }
}

#[derive(Serialize)]
pub(super) struct Injected<'a> {
    data: Vec<&'a str>,
    outputs: Option<&'a str>,
    #[serde(rename = "outputsPath")]
    outputs_path: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct AccessKey<'a> {
    store: &'a str,
    secret_key: &'a str,
}

/// What the selection asks for: volumes, the mounts and env vars of each
/// targeted container, the annotation. Costs what the selection selects;
/// the pod is consulted only for its volume names (`pod_volumes`), so that
/// a volume of ours never takes a name the pod already uses for something
/// else (SPEC §4: a pod is never denied over a volume name).
pub fn wanted(sel: &Selection<'_>, pod_volumes: &[VolumeView<'_>]) -> Result<Wanted, Conflict> {
    let mut namer = VolumeNamer::new(pod_volumes);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut data_paths = BTreeMap::new();
    let mut access_keys: BTreeMap<&str, AccessKey> = BTreeMap::new();
    let mut secret_keys: BTreeMap<&str, &str> = BTreeMap::new();

    let mut add_volume =
        |store: &Store, volume: &Value, path: &str, sub_path: Option<&str>, read_only: bool| {
            let (name, json) = namer.name(store.volume_name(), volume);
            mounts.push(want_mount(
                describe(store),
                &name,
                path,
                sub_path,
                read_only,
            ));
            volumes.push(WantVolume { name, json });
        };
    for store in &sel.data {
        data_paths.insert(store.name(), store.path());
        if let Backend::Volume {
            mount_path,
            read_only,
            volume,
            ..
        } = store.backend()
        {
            add_volume(store, volume, mount_path, None, *read_only);
        }
    }
    if let Some(out) = &sel.outputs {
        if let Backend::Volume { volume, .. } = out.store.backend() {
            add_volume(out.store, volume, &out.path, Some(&out.sub_path), false);
        }
    }
    // polystores' keys: every keyed bucket, the outputs one by its full path.
    let data_buckets = sel.data.iter().map(|s| (*s, s.path()));
    let outputs_path = sel.outputs.as_ref().map(|o| (o.store, o.path.as_str()));
    for (store, path) in data_buckets.chain(outputs_path) {
        if let Backend::Cloud {
            provider,
            credentials: Some(c),
            ..
        } = store.backend()
        {
            access_keys.insert(
                path,
                AccessKey {
                    store: provider.as_str(),
                    secret_key: &c.secret_key,
                },
            );
            secret_keys.insert(&c.secret_key, &c.secret);
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
    for provider in [Provider::Gcs, Provider::S3, Provider::Azure] {
        if let Some(store) = default_store(sel, provider) {
            sdk_env(store, &mut namer, &mut volumes, &mut mounts, &mut env);
        }
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
    let has_sdk_env = env.iter().any(|e| e.group.is_some());

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
        has_sdk_env,
        item_bytes,
        shared_bytes,
    })
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("maps of strings always serialise")
}

pub(super) fn want_mount(
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

pub(super) fn want_env(name: &str, value: EnvValue) -> WantEnv {
    let json = match &value {
        EnvValue::Plain(v) => k8s::env_value(name, v),
        EnvValue::Secret { secret, key } => k8s::env_secret(name, secret, key),
    };
    WantEnv {
        name: name.to_owned(),
        value,
        json,
        group: sdk_env_group(name),
    }
}
