//! What the selection asks for, before looking at the pod: the volumes, the
//! mounts and env vars of each targeted container and the annotation
//! ([`Wanted`]), indexed for the diff, and the estimate of the patch's size
//! checked against the bounds before any per-container work.

mod estimate;
mod sdk_env;
mod volume_namer;

pub(super) use estimate::json_str_bytes;
pub use estimate::targeted;
use estimate::OP_BYTES;
pub use sdk_env::default_store;
use sdk_env::sdk_env;
use volume_namer::VolumeNamer;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{describe, Conflict};
use crate::config::{Backend, EnvSource, Provider, Store};
use crate::k8s;
use crate::pod::VolumeView;
use crate::selection::Selection;
use crate::text::clip;
use crate::vocabulary::sdk_env_group;
use crate::vocabulary::{ANNOTATION_INJECTED, ENV_ACCESS_KEYS, ENV_DATA_PATHS, ENV_OUTPUTS_PATH};

/// The GCS key file's volume and mount, in words (as `describe` words a
/// store's), for conflicts and `explain`.
pub const GCS_KEY_DESCRIPTION: &str = "the GCS credentials";

/// What a mount or volume of ours is, in words, for conflicts and
/// `explain`.
#[derive(Clone, Copy)]
pub(super) enum What<'c> {
    /// A store's own volume.
    Store(&'c Store),
    /// The GCS key file of the GCS default store.
    GcsKey,
}

impl What<'_> {
    pub(super) fn text(self) -> String {
        match self {
            What::Store(store) => describe(store),
            What::GcsKey => GCS_KEY_DESCRIPTION.to_owned(),
        }
    }
}

/// A mount the webhook adds to each targeted container.
pub(super) struct WantMount<'c> {
    pub(super) what: What<'c>,
    pub(super) volume: Cow<'c, str>,
    pub(super) path: Cow<'c, str>,
    pub(super) sub_path: Option<Cow<'c, str>>,
    pub(super) read_only: bool,
    pub(super) json: Cow<'c, [u8]>,
}

/// An env var the webhook adds to each targeted container.
pub(super) struct WantEnv<'c> {
    pub(super) name: Cow<'c, str>,
    pub(super) value: EnvValue<'c>,
    pub(super) json: Cow<'c, [u8]>,
    /// For the SDK variables (SPEC §7), their group in
    /// [`SDK_ENV_GROUPS`](crate::vocabulary::SDK_ENV_GROUPS): a container
    /// that sets any variable of the group keeps its own and gets none of
    /// the group, instead of a conflict.
    pub(super) group: Option<usize>,
}

/// A pod volume the webhook adds.
pub(super) struct WantVolume<'c> {
    pub(super) name: Cow<'c, str>,
    pub(super) json: Cow<'c, [u8]>,
}

pub(super) enum EnvValue<'c> {
    Plain(Cow<'c, str>),
    Secret { secret: &'c str, key: &'c str },
}

impl<'c> EnvValue<'c> {
    fn of(source: &'c EnvSource) -> EnvValue<'c> {
        match source {
            EnvSource::Plain(v) => EnvValue::Plain(Cow::Borrowed(v)),
            EnvSource::Secret { secret, key } => EnvValue::Secret { secret, key },
        }
    }
}

/// Everything the selection asks for, before looking at the pod, indexed so
/// that diffing a container costs one lookup per item the container has:
/// linear in the pod, whatever the number of selected stores.
pub struct Wanted<'c> {
    pub(super) volumes: Vec<WantVolume<'c>>,
    pub(super) mounts: Vec<WantMount<'c>>,
    pub(super) env: Vec<WantEnv<'c>>,
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

impl Wanted<'_> {
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
                d.push_str(&format!("; {})", m.what.text()));
                d
            })
            .collect();
        let env = self.env.iter().map(|e| e.name.to_string()).collect();
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
/// else (SPEC §4: a pod is never denied over a volume name). The stores'
/// JSON is borrowed from the config, written when it loaded.
pub fn wanted<'c>(
    sel: &'c Selection<'c>,
    pod_volumes: &[VolumeView<'_>],
) -> Result<Wanted<'c>, Conflict> {
    let mut namer = VolumeNamer::new(pod_volumes);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut data_paths = BTreeMap::new();
    let mut access_keys: BTreeMap<&str, AccessKey> = BTreeMap::new();
    let mut key_env: BTreeMap<&str, &'c Store> = BTreeMap::new();

    for store in &sel.data {
        data_paths.insert(store.name(), store.path());
        if let Backend::Volume {
            mount_path,
            read_only,
            volume,
            ..
        } = store.backend()
        {
            let fragments = store.fragments();
            let (name, json) = namer.name(store.volume_name(), volume, &fragments.volume);
            let mount = match &name {
                Cow::Borrowed(_) => Cow::Borrowed(&*fragments.mount),
                Cow::Owned(name) => {
                    let mut json = Vec::new();
                    k8s::write_volume_mount(&mut json, name, mount_path, None, *read_only);
                    Cow::Owned(json)
                }
            };
            mounts.push(WantMount {
                what: What::Store(store),
                volume: name.clone(),
                path: Cow::Borrowed(mount_path),
                sub_path: None,
                read_only: *read_only,
                json: mount,
            });
            volumes.push(WantVolume { name, json });
        }
    }
    if let Some(out) = &sel.outputs {
        if let Backend::Volume { volume, .. } = out.store.backend() {
            let fragments = out.store.fragments();
            let (name, json) = namer.name(out.store.volume_name(), volume, &fragments.volume);
            let mut mount = Vec::new();
            k8s::write_volume_mount(&mut mount, &name, &out.path, Some(&out.sub_path), false);
            mounts.push(WantMount {
                what: What::Store(out.store),
                volume: name.clone(),
                path: Cow::Borrowed(&out.path),
                sub_path: Some(Cow::Borrowed(&out.sub_path)),
                read_only: false,
                json: Cow::Owned(mount),
            });
            volumes.push(WantVolume { name, json });
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
            key_env.insert(&c.secret_key, store);
        }
    }

    let mut env = vec![plain_env(ENV_DATA_PATHS, to_json(&data_paths))];
    if let Some(out) = &sel.outputs {
        env.push(plain_env(ENV_OUTPUTS_PATH, out.path.clone()));
    }
    if !access_keys.is_empty() {
        env.push(plain_env(ENV_ACCESS_KEYS, to_json(&access_keys)));
    }
    for (key, store) in key_env {
        if let Backend::Cloud {
            credentials: Some(c),
            ..
        } = store.backend()
        {
            env.push(WantEnv {
                name: Cow::Borrowed(key),
                value: EnvValue::Secret {
                    secret: &c.secret,
                    key,
                },
                json: Cow::Borrowed(&store.fragments().key_env),
                group: sdk_env_group(key),
            });
        }
    }
    for provider in [Provider::Gcs, Provider::S3, Provider::Azure] {
        if let Some(store) = default_store(sel, provider) {
            sdk_env(store, &mut namer, &mut volumes, &mut mounts, &mut env);
        }
    }

    let mount_by_path = Index::new(mounts.iter().map(|m| &*m.path));
    // Two of our mounts at one path: the first one found for each path is
    // the one the index holds.
    for (i, m) in mounts.iter().enumerate() {
        let first = mount_by_path.find(&m.path, |j| &mounts[j].path);
        if let Some(first) = first.filter(|first| *first != i) {
            return Err(Conflict::OwnMounts {
                path: clip(&m.path),
                first: mounts[first].what.text(),
                second: m.what.text(),
            });
        }
    }
    let mount_by_volume = Index::new(mounts.iter().map(|m| &*m.volume));
    let volume_index = Index::new(volumes.iter().map(|v| &*v.name));
    let env_index = Index::new(env.iter().map(|e| &*e.name));
    let has_sdk_env = env.iter().any(|e| e.group.is_some());

    let annotation = to_json(&Injected {
        data: sel.data.iter().map(|s| s.name()).collect(),
        outputs: sel.outputs.as_ref().map(|o| o.store.name()),
        outputs_path: sel.outputs.as_ref().map(|o| o.path.as_str()),
    });
    // The JSON is written already: its length is the serialised size.
    let item_bytes = mounts.iter().map(|m| m.json.len() as u64).sum::<u64>()
        + env.iter().map(|e| e.json.len() as u64).sum::<u64>();
    // `/spec/volumes/-` per volume; the annotation as the longest of its
    // three forms (the `/metadata` one wraps it in two maps).
    let shared_bytes = volumes
        .iter()
        .map(|v| OP_BYTES + "/spec/volumes/-".len() as u64 + v.json.len() as u64)
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

/// One of the env vars every review writes anew (their values depend on
/// the selection and the pod).
fn plain_env<'c>(name: &'static str, value: String) -> WantEnv<'c> {
    let mut json = Vec::with_capacity(value.len() + name.len() + 24);
    k8s::write_env_value(&mut json, name, &value);
    WantEnv {
        name: Cow::Borrowed(name),
        value: EnvValue::Plain(Cow::Owned(value)),
        json: Cow::Owned(json),
        group: sdk_env_group(name),
    }
}
