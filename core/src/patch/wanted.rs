//! What the selection asks for, before looking at the pod: the volumes, the
//! mounts and env vars of each targeted container and the annotation
//! ([`Wanted`]), indexed for the diff, and the estimate of the patch's size
//! checked against the bounds before any per-container work.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::diff::covers;
use super::{describe, Conflict};
use crate::bounds::Estimate;
use crate::config::{Backend, Provider, SdkKeys, Store};
use crate::k8s;
use crate::names;
use crate::pod::{PodView, VolumeView};
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
pub(super) fn json_len(value: &Value) -> u64 {
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
pub(super) fn json_str_bytes(s: &str) -> u64 {
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
    pub(super) fn json_bytes(&self) -> u64 {
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
    pub(super) fn json_bytes(&self) -> u64 {
        let value = match &self.value {
            EnvValue::Plain(v) => 10 + json_str_bytes(v),
            EnvValue::Secret { secret, key } => 47 + json_str_bytes(key) + json_str_bytes(secret),
        };
        8 + json_str_bytes(&self.name) + value
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

/// A provider's default store among the selected ones (SPEC §7): the
/// outputs store if it is of that provider, else the first selected data
/// store of that provider by name. Only its settings become SDK variables.
pub fn default_store<'c>(sel: &Selection<'c>, provider: Provider) -> Option<&'c Store> {
    let of =
        |s: &&Store| matches!(s.backend(), Backend::Cloud { provider: p, .. } if *p == provider);
    sel.outputs
        .as_ref()
        .map(|o| o.store)
        .filter(of)
        .or_else(|| sel.data.iter().copied().find(of))
}

/// The SDK variables of one provider's default store (SPEC §7), and for
/// GCS the key file they point to. A variable is set only when its field
/// is given; a keyless store gets no credential.
fn sdk_env(
    store: &Store,
    namer: &mut VolumeNamer<'_, '_>,
    volumes: &mut Vec<WantVolume>,
    mounts: &mut Vec<WantMount>,
    env: &mut Vec<WantEnv>,
) {
    let Backend::Cloud {
        provider,
        bucket,
        credentials,
        endpoint,
        region,
    } = store.backend()
    else {
        return;
    };
    // The SDK keys, with the Secret that holds them (none on a keyless store).
    let sdk = credentials.as_ref().map(|c| (c.secret.as_str(), &c.sdk));
    let secret_ref = |secret: &str, key: &str| EnvValue::Secret {
        secret: secret.to_owned(),
        key: key.to_owned(),
    };
    match provider {
        Provider::Gcs => {
            if let Some(c) = credentials {
                let what = "the GCS credentials".to_owned();
                let volume = k8s::volume(
                    GCS_CREDENTIALS_VOLUME,
                    k8s::VolumeSource::SecretKey {
                        secret: &c.secret,
                        key: &c.secret_key,
                    },
                );
                let (name, json) = namer.name(GCS_CREDENTIALS_VOLUME, &volume);
                mounts.push(want_mount(
                    what.clone(),
                    &name,
                    GCS_CREDENTIALS_DIR,
                    None,
                    true,
                ));
                volumes.push(WantVolume { name, json });
                env.push(want_env(
                    ENV_GOOGLE_CREDENTIALS,
                    EnvValue::Plain(format!("{GCS_CREDENTIALS_DIR}/{}", c.secret_key)),
                ));
            }
            if let Some(endpoint) = endpoint {
                env.push(want_env(
                    ENV_STORAGE_EMULATOR_HOST,
                    EnvValue::Plain(endpoint.clone()),
                ));
            }
        }
        Provider::S3 => {
            if let Some((
                secret,
                SdkKeys::S3 {
                    access_key_id,
                    secret_access_key,
                    session_token,
                },
            )) = sdk
            {
                env.push(want_env(
                    ENV_AWS_ACCESS_KEY_ID,
                    secret_ref(secret, access_key_id),
                ));
                env.push(want_env(
                    ENV_AWS_SECRET_ACCESS_KEY,
                    secret_ref(secret, secret_access_key),
                ));
                if let Some(token) = session_token {
                    env.push(want_env(ENV_AWS_SESSION_TOKEN, secret_ref(secret, token)));
                }
            }
            if let Some(endpoint) = endpoint {
                env.push(want_env(
                    ENV_AWS_ENDPOINT_URL_S3,
                    EnvValue::Plain(endpoint.clone()),
                ));
            }
            if let Some(region) = region {
                env.push(want_env(ENV_AWS_REGION, EnvValue::Plain(region.clone())));
                env.push(want_env(
                    ENV_AWS_DEFAULT_REGION,
                    EnvValue::Plain(region.clone()),
                ));
            }
        }
        Provider::Azure => {
            if let Some(account) = Provider::azure_account(bucket) {
                env.push(want_env(
                    ENV_AZURE_STORAGE_ACCOUNT_NAME,
                    EnvValue::Plain(account.to_owned()),
                ));
            }
            match sdk {
                Some((secret, SdkKeys::AzureConnectionString(key))) => env.push(want_env(
                    ENV_AZURE_STORAGE_CONNECTION_STRING,
                    secret_ref(secret, key),
                )),
                Some((secret, SdkKeys::AzureAccountKey(key))) => env.push(want_env(
                    ENV_AZURE_STORAGE_ACCOUNT_KEY,
                    secret_ref(secret, key),
                )),
                _ => {}
            }
        }
    }
}

/// Names the webhook's volumes so that none takes a name the pod already
/// uses for other content (SPEC §4): the preferred name when it is free or
/// already holds exactly our volume (a re-admitted pod), else the first
/// free alternate [`names::alternate_volume_name`]. Deterministic, so a
/// re-admitted pod gets the same names and no patch.
struct VolumeNamer<'p, 'a> {
    pod: &'p [VolumeView<'a>],
    /// The pod's volumes by name, when there are too many to scan.
    by_name: Option<HashMap<&'p str, usize>>,
    /// The names given so far in this review.
    taken: Vec<String>,
}

impl<'p, 'a> VolumeNamer<'p, 'a> {
    fn new(pod: &'p [VolumeView<'a>]) -> Self {
        let by_name = (pod.len() > SCAN_AT_MOST).then(|| {
            let mut map = HashMap::with_capacity(pod.len());
            for (i, v) in pod.iter().enumerate() {
                map.entry(v.name.as_ref()).or_insert(i);
            }
            map
        });
        VolumeNamer {
            pod,
            by_name,
            taken: Vec::new(),
        }
    }

    fn pod_volume(&self, name: &str) -> Option<&VolumeView<'a>> {
        match &self.by_name {
            Some(map) => map.get(name).map(|&i| &self.pod[i]),
            None => self.pod.iter().find(|v| v.name == name),
        }
    }

    /// The name for a volume whose preferred name is `preferred`, and the
    /// volume under that name.
    fn name(&mut self, preferred: &str, volume: &Value) -> (String, Value) {
        // Each refused candidate is a distinct pod volume or a name given
        // earlier, so this ends within pod volumes + taken + 1 steps.
        for n in 1.. {
            let candidate = match n {
                1 => preferred.to_owned(),
                n => names::alternate_volume_name(preferred, n),
            };
            if self.taken.contains(&candidate) {
                continue;
            }
            let mut json = volume.clone();
            if n > 1 {
                json["name"] = Value::String(candidate.clone());
            }
            let free = match self.pod_volume(&candidate) {
                None => true,
                Some(have) => serde_json::from_str::<Value>(have.raw.get())
                    .is_ok_and(|have| covers(&have, &json)),
            };
            if free {
                self.taken.push(candidate.clone());
                return (candidate, json);
            }
        }
        unreachable!("the candidates are unbounded and the pod's volumes are not")
    }
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
