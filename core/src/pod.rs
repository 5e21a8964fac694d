//! A borrowed, typed view of only the pod fields the decision reads: names,
//! our annotations, the opt-out label, volume names, and each container's
//! name, env and mounts. Everything else in the pod is skipped by serde
//! without being built, which is what makes a review cheaper than parsing the
//! body into a `serde_json::Value`.
//!
//! This view is read-only: the patch is computed against the raw object and
//! the pod is never re-serialised from it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::text::JsonStr;
use crate::vocabulary::{
    ANNOTATION_INJECTED, ANNOTATION_OUTPUTS_SUBPATH, ANNOTATION_PERSISTENCE,
    ANNOTATION_UNIQUE_NAME, LABEL_INJECTION, OPT_OUT, RESERVED_ENV, VOLUME_PREFIX,
};

/// The pod as the decision sees it.
#[derive(Debug, Default)]
pub struct PodView<'a> {
    /// `metadata`; `None` when the object has none.
    pub metadata: Option<Metadata<'a>>,
    /// `spec`; `None` when the object has none.
    pub spec: Option<Spec<'a>>,
}

/// Which of the pod's entries a review can need, so that the others are
/// skipped as they are read, never kept: a pod of many entries costs its
/// parse, not memory.
///
/// Volumes: only those named with the webhook's prefix
/// ([`VOLUME_PREFIX`]) are kept (every name the webhook gives has it).
/// With [`Keep::Ours`], env vars and mounts too: see [`Relevant`].
#[derive(Debug, Clone, Copy)]
pub enum Keep<'k> {
    /// Every env var and mount (a view read without a config).
    All,
    /// Only the env vars and mounts that can meet the webhook's.
    Ours(&'k Relevant),
}

/// What of a pod's containers a config's reviews can read: the env vars
/// the webhook can set (the SPEC's names, [`RESERVED_ENV`], and these
/// `secretKey`s), and the mounts of a volume named with its prefix or at a
/// path where it can mount (a data store's, the GCS key's, or under an
/// outputs store's mount path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relevant {
    /// Every bucket store's `secretKey`.
    pub env_keys: HashSet<String>,
    /// Every data volume store's mount path, and the GCS key's directory.
    pub mount_paths: HashSet<String>,
    /// Every outputs volume store's mount path: a run's directory is
    /// beneath one.
    pub outputs_roots: HashSet<String>,
}

impl Keep<'_> {
    fn env(&self, name: &str) -> bool {
        match self {
            Keep::All => true,
            Keep::Ours(r) => RESERVED_ENV.contains(&name) || r.env_keys.contains(name),
        }
    }

    fn mount(&self, m: &Mount<'_>) -> bool {
        let Keep::Ours(r) = self else {
            return true;
        };
        if m.name.starts_with(VOLUME_PREFIX) || r.outputs_roots.contains("/") {
            return true;
        }
        let path = crate::names::clean_path(&m.mount_path);
        r.mount_paths.contains(path.as_ref())
            || path
                .match_indices('/')
                .skip(1)
                .any(|(i, _)| r.outputs_roots.contains(&path[..i]))
    }
}

/// Reads a pod object (or null) with `keep`'s entries.
pub struct PodSeed<'k>(pub Keep<'k>);

impl<'de, 'k> de::DeserializeSeed<'de> for PodSeed<'k> {
    type Value = Option<PodView<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(SeededObject(PodVisitor(self.0)))
    }
}

/// Reads a pod object from `text` with `keep`'s entries.
pub fn read<'a>(text: &'a str, keep: Keep<'_>) -> Result<PodView<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let pod = de::Deserializer::deserialize_map(&mut de, PodVisitor(keep))?;
    de.end()?;
    Ok(pod)
}

impl<'de: 'a, 'a> Deserialize<'de> for PodView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PodVisitor(Keep::All))
    }
}

/// Sets a field once: a second occurrence is serde's "duplicate field".
fn once<T, E: de::Error>(slot: &mut Option<T>, key: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(key));
    }
    Ok(())
}

struct PodVisitor<'k>(Keep<'k>);

impl<'de, 'k> Visitor<'de> for PodVisitor<'k> {
    type Value = PodView<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct PodView")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut metadata, mut spec) = (None, None);
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            match &*key {
                "metadata" => once(
                    &mut metadata,
                    "metadata",
                    map.next_value_seed(SeededObject(Derived::<Metadata<'de>>(
                        std::marker::PhantomData,
                    )))?,
                )?,
                "spec" => once(
                    &mut spec,
                    "spec",
                    map.next_value_seed(SeededObject(SpecVisitor(self.0)))?,
                )?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(PodView {
            metadata: metadata.flatten(),
            spec: spec.flatten(),
        })
    }
}

/// The metadata fields the decision reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// `metadata.name`, absent for a `generateName` pod at admission.
    #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
    pub name: Option<Cow<'a, str>>,
    /// `metadata.generateName`.
    #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
    pub generate_name: Option<Cow<'a, str>>,
    /// `metadata.namespace`.
    #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
    pub namespace: Option<Cow<'a, str>>,
    /// Our annotations; `None` when the pod has no `annotations` map.
    #[serde(borrow, default)]
    pub annotations: Option<Annotations<'a>>,
    /// Whether the pod carries the opt-out label.
    #[serde(default)]
    pub labels: OptOut,
    /// The Job that controls the pod, read from `metadata.ownerReferences`.
    #[serde(borrow, default, rename = "ownerReferences")]
    pub controller_job: ControllerJob<'a>,
}

/// The name of the `batch/v1` `Job` named by the pod's one controller
/// ownerReference (`controller: true`), if that is what controls it.
///
/// The list is read in one pass keeping only the controller reference, so a
/// hostile list of any length costs its parse and no memory beyond the body.
/// Two controller references (which the API server rejects after admission)
/// name no Job: the pod then gets the sub-path of a pod without one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ControllerJob<'a>(pub Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for ControllerJob<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct OwnerRef<'a> {
            #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
            api_version: Option<Cow<'a, str>>,
            #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
            kind: Option<Cow<'a, str>>,
            #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
            name: Option<Cow<'a, str>>,
            #[serde(default)]
            controller: Option<bool>,
        }
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = ControllerJob<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of owner references")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ControllerJob(None))
            }
            fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut controllers = 0_usize;
                let mut job = None;
                while let Some(r) =
                    seq.next_element_seed(ObjectSeed::<OwnerRef<'de>>(std::marker::PhantomData))?
                {
                    if r.controller != Some(true) {
                        continue;
                    }
                    controllers += 1;
                    let is_job = r.api_version.as_deref() == Some("batch/v1")
                        && r.kind.as_deref() == Some("Job");
                    job = r.name.filter(|n| is_job && !n.is_empty());
                }
                Ok(ControllerJob(if controllers == 1 { job } else { None }))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The webhook's own annotations, picked out of the pod's map.
#[derive(Debug, Default, Clone)]
pub struct Annotations<'a> {
    /// [`ANNOTATION_PERSISTENCE`].
    pub persistence: Option<Cow<'a, str>>,
    /// [`ANNOTATION_OUTPUTS_SUBPATH`].
    pub outputs_subpath: Option<Cow<'a, str>>,
    /// [`ANNOTATION_UNIQUE_NAME`].
    pub unique_name: Option<Cow<'a, str>>,
    /// [`ANNOTATION_INJECTED`].
    pub injected: Option<Cow<'a, str>>,
}

impl Annotations<'_> {
    /// The `outputsPath` recorded in [`ANNOTATION_INJECTED`] by an earlier
    /// admission, if the annotation is there and readable. A garbled
    /// annotation is ignored here (and replaced by the patch): it is ours,
    /// and a pod's author cannot use it to choose another run's directory
    /// because the sub-path rules still check what it says.
    pub fn injected_outputs_path(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Recorded {
            #[serde(rename = "outputsPath")]
            outputs_path: Option<String>,
        }
        serde_json::from_str::<Recorded>(self.injected.as_deref()?)
            .ok()?
            .outputs_path
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Annotations<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Annotations<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of annotation names to string values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = Annotations::default();
                while let Some(key) = map.next_key::<JsonStr<'de>>()? {
                    let slot = match &*key {
                        ANNOTATION_PERSISTENCE => &mut out.persistence,
                        ANNOTATION_OUTPUTS_SUBPATH => &mut out.outputs_subpath,
                        ANNOTATION_UNIQUE_NAME => &mut out.unique_name,
                        ANNOTATION_INJECTED => &mut out.injected,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format_args!(
                            "duplicate annotation {:?}",
                            &*key
                        )));
                    }
                    *slot = Some(map.next_value::<JsonStr<'de>>()?.0);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Whether the labels carry `polyaxon.com/persistence-injection: disabled`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OptOut(pub bool);

impl<'de> Deserialize<'de> for OptOut {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OptOut;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of label names to string values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<OptOut, E> {
                Ok(OptOut(false))
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<OptOut, M::Error> {
                let mut out = false;
                while let Some(key) = map.next_key::<JsonStr<'de>>()? {
                    if &*key == LABEL_INJECTION {
                        out = &*map.next_value::<JsonStr<'de>>()? == OPT_OUT;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(OptOut(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The spec fields the decision reads.
#[derive(Debug, Default)]
pub struct Spec<'a> {
    /// `spec.volumes`, only those named with the webhook's prefix (see
    /// [`Keep`]); `None` when absent (the patch then adds the list).
    pub volumes: Option<Vec<VolumeView<'a>>>,
    /// `spec.containers`.
    pub containers: Option<Vec<Container<'a>>>,
    /// `spec.initContainers`.
    pub init_containers: Option<Vec<Container<'a>>>,
}

struct SpecVisitor<'k>(Keep<'k>);

impl<'de, 'k> Visitor<'de> for SpecVisitor<'k> {
    type Value = Spec<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Spec")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut volumes, mut containers, mut init) = (None, None, None);
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            match &*key {
                "volumes" => once(&mut volumes, "volumes", map.next_value_seed(OurVolumes)?)?,
                "containers" => once(
                    &mut containers,
                    "containers",
                    map.next_value_seed(Objects(ContainerVisitor(self.0)))?,
                )?,
                "initContainers" => once(
                    &mut init,
                    "initContainers",
                    map.next_value_seed(Objects(ContainerVisitor(self.0)))?,
                )?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Spec {
            volumes: volumes.flatten(),
            containers: containers.flatten(),
            init_containers: init.flatten(),
        })
    }
}

/// `spec.volumes` (or null), keeping only the volumes named with the
/// webhook's prefix: no other can hold one of ours or take its name.
struct OurVolumes;

impl<'de> de::DeserializeSeed<'de> for OurVolumes {
    type Value = Option<Vec<VolumeView<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OurVolumes {
    type Value = Option<Vec<VolumeView<'de>>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<VolumeView<'de>>()? {
            if v.name.starts_with(VOLUME_PREFIX) {
                out.push(v);
            }
        }
        Ok(Some(out))
    }
}

/// A pod volume: its name, and its raw JSON to compare against ours when the
/// names match.
#[derive(Debug)]
pub struct VolumeView<'a> {
    /// `name`.
    pub name: Cow<'a, str>,
    /// The whole volume object as it was sent.
    pub raw: &'a RawValue,
}

impl<'de: 'a, 'a> Deserialize<'de> for VolumeView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Name<'a> {
            #[serde(borrow)]
            name: Cow<'a, str>,
        }
        let raw = <&'a RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            return Err(de::Error::custom("a volume must be a JSON object"));
        }
        let Name { name } = serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
        Ok(VolumeView { name, raw })
    }
}

/// A container or init container.
#[derive(Debug, Default)]
pub struct Container<'a> {
    /// `name`.
    pub name: Cow<'a, str>,
    /// `env`, only the variables a review can need (see [`Keep`]); `None`
    /// when absent.
    pub env: Option<Vec<Env<'a>>>,
    /// `volumeMounts`, only the mounts a review can need (see [`Keep`]);
    /// `None` when absent.
    pub volume_mounts: Option<Vec<Mount<'a>>>,
}

#[derive(Clone, Copy)]
struct ContainerVisitor<'k>(Keep<'k>);

impl<'de, 'k> Visitor<'de> for ContainerVisitor<'k> {
    type Value = Container<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Container")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut name, mut env, mut mounts) = (None, None, None);
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            match &*key {
                "name" => once(&mut name, "name", map.next_value::<JsonStr<'de>>()?.0)?,
                "env" => once(&mut env, "env", map.next_value_seed(EnvList(self.0))?)?,
                "volumeMounts" => once(
                    &mut mounts,
                    "volumeMounts",
                    map.next_value_seed(MountList(self.0))?,
                )?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Container {
            name: name.unwrap_or_default(),
            env: env.flatten(),
            volume_mounts: mounts.flatten(),
        })
    }
}

/// A container's `volumeMounts` (or null): every entry read, only those
/// `Keep` names kept.
struct MountList<'k>(Keep<'k>);

impl<'de, 'k> de::DeserializeSeed<'de> for MountList<'k> {
    type Value = Option<Vec<Mount<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'k> Visitor<'de> for MountList<'k> {
    type Value = Option<Vec<Mount<'de>>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of JSON objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut out = Vec::new();
        while let Some(m) =
            seq.next_element_seed(ObjectSeed::<Mount<'de>>(std::marker::PhantomData))?
        {
            if self.0.mount(&m) {
                out.push(m);
            }
        }
        Ok(Some(out))
    }
}

/// A container's `env` (or null): every entry read, only those `Keep`
/// names kept.
struct EnvList<'k>(Keep<'k>);

impl<'de, 'k> de::DeserializeSeed<'de> for EnvList<'k> {
    type Value = Option<Vec<Env<'de>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'k> Visitor<'de> for EnvList<'k> {
    type Value = Option<Vec<Env<'de>>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of JSON objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut out = Vec::new();
        while let Some(e) =
            seq.next_element_seed(ObjectSeed::<Env<'de>>(std::marker::PhantomData))?
        {
            if self.0.env(&e.name) {
                out.push(e);
            }
        }
        Ok(Some(out))
    }
}

/// An env var as the pod has it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Env<'a> {
    /// `name`.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// `value`.
    #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
    pub value: Option<Cow<'a, str>>,
    /// `valueFrom`.
    #[serde(borrow, default, deserialize_with = "object_or_null")]
    pub value_from: Option<ValueFrom<'a>>,
}

/// `valueFrom`: only the secret reference matters to us.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom<'a> {
    /// `secretKeyRef`.
    #[serde(borrow, default, deserialize_with = "object_or_null")]
    pub secret_key_ref: Option<KeyRef<'a>>,
}

/// `secretKeyRef`.
#[derive(Debug, Default, Deserialize)]
pub struct KeyRef<'a> {
    /// The Secret's name.
    #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
    pub name: Option<Cow<'a, str>>,
    /// The key in the Secret.
    #[serde(borrow)]
    pub key: Cow<'a, str>,
}

/// A volume mount as the pod has it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount<'a> {
    /// `name` (the volume).
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// `mountPath`.
    #[serde(borrow)]
    pub mount_path: Cow<'a, str>,
    /// `subPath`.
    #[serde(borrow, default, deserialize_with = "crate::text::optional_str")]
    pub sub_path: Option<Cow<'a, str>>,
    /// `readOnly`.
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// A map visitor for a type with a derived `Deserialize`.
struct Derived<T>(std::marker::PhantomData<T>);

impl<T> Clone for Derived<T> {
    fn clone(&self) -> Self {
        Derived(std::marker::PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Derived<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// A JSON object read by map visitor `V` (or null, `None`); see
/// [`object_or_null`].
struct SeededObject<V>(V);

impl<'de, V: Visitor<'de>> de::DeserializeSeed<'de> for SeededObject<V> {
    type Value = Option<V::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for SeededObject<V> {
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
        self.0.visit_map(map).map(Some)
    }
}

/// A list of JSON objects (or null), each read by map visitor `V`: not a
/// list of lists (see [`object_or_null`]).
struct Objects<V>(V);

impl<'de, V: Visitor<'de> + Clone> de::DeserializeSeed<'de> for Objects<V> {
    type Value = Option<Vec<V::Value>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, V: Visitor<'de> + Clone> Visitor<'de> for Objects<V> {
    type Value = Option<Vec<V::Value>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of JSON objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(SeededObject(self.0.clone()))? {
            match item {
                Some(item) => out.push(item),
                None => return Err(de::Error::custom("expected a JSON object, found null")),
            }
        }
        Ok(Some(out))
    }
}

/// serde's derived structs also accept a JSON *list* of field values; a pod
/// written that way would get a patch that cannot apply to it. These read a
/// derived struct from a JSON object only (or null, for an optional field).
pub(crate) fn object_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_any(ObjectVisitor(std::marker::PhantomData))
}

struct ObjectSeed<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> de::DeserializeSeed<'de> for ObjectSeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_any(ObjectVisitor(std::marker::PhantomData))
            .and_then(|v: Option<T>| {
                v.ok_or_else(|| de::Error::custom("expected a JSON object, found null"))
            })
    }
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
    }
}

/// The Kubernetes field path of annotation `key`, for denials:
/// `metadata.annotations[polyaxon.com/persistence]`.
pub fn annotation_field(key: &str) -> String {
    format!("metadata.annotations[{key}]")
}

impl PodView<'_> {
    /// The pod's annotations we read (empty when there are none).
    pub fn annotations(&self) -> Annotations<'_> {
        self.metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default()
    }

    /// The name of the Job controlling the pod (SPEC §3 rule 3), if any.
    pub fn controller_job(&self) -> Option<&str> {
        self.metadata.as_ref()?.controller_job.0.as_deref()
    }

    /// Names of every container and init container, init containers first.
    pub fn container_names(&self) -> Vec<&str> {
        let Some(spec) = &self.spec else {
            return Vec::new();
        };
        let init = spec.init_containers.iter().flatten();
        let main = spec.containers.iter().flatten();
        init.chain(main).map(|c| c.name.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_outputs_path_ignores_a_garbled_annotation() {
        let recorded = |text: &str| {
            Annotations {
                injected: Some(Cow::Owned(text.to_owned())),
                ..Annotations::default()
            }
            .injected_outputs_path()
        };
        assert_eq!(recorded("not json"), None);
        assert_eq!(recorded(r#"{"outputsPath":"/o/x"}"#), Some("/o/x".into()));
        assert_eq!(Annotations::default().injected_outputs_path(), None);
    }

    #[test]
    fn reads_only_our_fields() {
        let json = r#"{"metadata":{"name":"p","labels":{"a":"b","polyaxon.com/persistence-injection":"disabled"},
            "annotations":{"x":"y","polyaxon.com/persistence":"data: []","polyaxon.com/unique-name":"u.p.1"}},
            "spec":{"volumes":[{"name":"v","emptyDir":{}},{"name":"pw-d","emptyDir":{}}],"containers":[{"name":"c","image":"i",
            "env":[{"name":"A","value":"1"},{"name":"K","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}],
            "volumeMounts":[{"name":"v","mountPath":"/v"}]}]}}"#;
        let pod: PodView = serde_json::from_str(json).expect("parses");
        let meta = pod.metadata.as_ref().expect("metadata");
        assert!(meta.labels.0);
        let ann = pod.annotations();
        assert_eq!(ann.persistence.as_deref(), Some("data: []"));
        assert_eq!(ann.unique_name.as_deref(), Some("u.p.1"));
        assert!(ann.outputs_subpath.is_none() && ann.injected.is_none());
        let spec = pod.spec.as_ref().expect("spec");
        let vols = spec.volumes.as_ref().expect("volumes");
        assert_eq!(vols.len(), 1, "only volumes named with our prefix");
        assert_eq!(vols[0].name, "pw-d");
        assert_eq!(vols[0].raw.get(), r#"{"name":"pw-d","emptyDir":{}}"#);
        let c = &spec.containers.as_ref().expect("containers")[0];
        let env = c.env.as_ref().expect("env");
        assert_eq!(env[0].value.as_deref(), Some("1"));
        let r = env[1]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        assert_eq!(r.map(|r| r.key.as_ref()), Some("k"));
        assert_eq!(pod.container_names(), vec!["c"]);
    }

    #[test]
    fn only_env_vars_the_webhook_can_set_are_kept() {
        let json = r#"{"spec":{"containers":[{"name":"c","env":[{"name":"A","value":"1"},
            {"name":"POLYAXON_RUN_OUTPUTS_PATH","value":"/o"},{"name":"k.json","value":"x"},
            {"name":"AWS_REGION"},{"name":"B","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}}]},
            {"name":"d","env":[{"name":"A"}]},{"name":"e","env":null}]}}"#;
        let relevant = Relevant {
            env_keys: ["k.json".to_owned()].into(),
            ..Relevant::default()
        };
        let pod = read(json, Keep::Ours(&relevant)).expect("parses");
        let containers = pod.spec.expect("spec").containers.expect("containers");
        let names = |c: &Container| -> Option<Vec<String>> {
            c.env
                .as_ref()
                .map(|e| e.iter().map(|e| e.name.to_string()).collect())
        };
        assert_eq!(
            names(&containers[0]),
            Some(vec![
                "POLYAXON_RUN_OUTPUTS_PATH".into(),
                "k.json".into(),
                "AWS_REGION".into()
            ])
        );
        assert_eq!(
            names(&containers[1]),
            Some(vec![]),
            "the list is there, empty"
        );
        assert_eq!(names(&containers[2]), None);
        let all: PodView = serde_json::from_str(json).expect("parses");
        let first = &all.spec.expect("spec").containers.expect("containers")[0];
        assert_eq!(
            first.env.as_ref().map(Vec::len),
            Some(5),
            "without a config: all"
        );
    }

    #[test]
    fn only_mounts_that_can_meet_ours_are_kept() {
        let json = r#"{"spec":{"containers":[{"name":"c","volumeMounts":[
            {"name":"a","mountPath":"/a"},{"name":"pw-x","mountPath":"/anywhere"},
            {"name":"b","mountPath":"/data/1"},{"name":"c","mountPath":"data/1/"},
            {"name":"d","mountPath":"/out"},{"name":"e","mountPath":"/out/run/1"},
            {"name":"f","mountPath":"/outside/run"}]}]}}"#;
        let relevant = Relevant {
            mount_paths: ["/data/1".to_owned()].into(),
            outputs_roots: ["/out".to_owned()].into(),
            ..Relevant::default()
        };
        let pod = read(json, Keep::Ours(&relevant)).expect("parses");
        let c = &pod.spec.expect("spec").containers.expect("containers")[0];
        let names: Vec<&str> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.as_ref())
            .collect();
        assert_eq!(names, ["pw-x", "b", "c", "e"]);
    }

    #[test]
    fn labels_without_opt_out_and_null_labels() {
        for (json, want) in [
            (
                r#"{"metadata":{"labels":{"polyaxon.com/persistence-injection":"enabled"}}}"#,
                false,
            ),
            (r#"{"metadata":{"labels":null}}"#, false),
            (r#"{"metadata":{}}"#, false),
        ] {
            let pod: PodView = serde_json::from_str(json).expect("parses");
            assert_eq!(pod.metadata.expect("metadata").labels.0, want, "{json}");
        }
    }

    #[test]
    fn controller_job_is_the_one_batch_v1_job_controller() {
        let job = |refs: &str| {
            let json = format!(r#"{{"metadata":{{"ownerReferences":{refs}}}}}"#);
            let pod: PodView = serde_json::from_str(&json).expect(refs);
            pod.controller_job().map(str::to_owned)
        };
        let r = |api: &str, kind: &str, name: &str, controller: &str| {
            format!(
                r#"{{"apiVersion":"{api}","kind":"{kind}","name":"{name}","uid":"u","controller":{controller}}}"#
            )
        };
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            (
                "a Job controller",
                format!("[{}]", r("batch/v1", "Job", "train", "true")),
                Some("train"),
            ),
            (
                "the controller among other owners",
                format!(
                    "[{},{}]",
                    r("v1", "ConfigMap", "c", "false"),
                    r("batch/v1", "Job", "train", "true")
                ),
                Some("train"),
            ),
            (
                "a Job that is not the controller",
                format!("[{}]", r("batch/v1", "Job", "train", "false")),
                None,
            ),
            (
                "no controller field",
                r#"[{"apiVersion":"batch/v1","kind":"Job","name":"train"}]"#.to_owned(),
                None,
            ),
            (
                "a ReplicaSet controller",
                format!("[{}]", r("apps/v1", "ReplicaSet", "web-1", "true")),
                None,
            ),
            (
                "another API group's Job",
                format!("[{}]", r("example.com/v1", "Job", "train", "true")),
                None,
            ),
            (
                "batch/v1beta1",
                format!("[{}]", r("batch/v1beta1", "Job", "train", "true")),
                None,
            ),
            (
                "an empty name",
                format!("[{}]", r("batch/v1", "Job", "", "true")),
                None,
            ),
            (
                "two controllers (refused by the API server later): no Job",
                format!(
                    "[{},{}]",
                    r("batch/v1", "Job", "a", "true"),
                    r("batch/v1", "Job", "b", "true")
                ),
                None,
            ),
            ("null", "null".to_owned(), None),
            ("empty", "[]".to_owned(), None),
        ];
        for (what, refs, want) in cases {
            assert_eq!(job(&refs).as_deref(), want, "{what}: {refs}");
        }
    }

    #[test]
    fn a_huge_owner_list_keeps_nothing_but_the_controller() {
        let mut refs = String::from("[");
        for i in 0..100_000 {
            refs.push_str(&format!(
                r#"{{"apiVersion":"v1","kind":"ConfigMap","name":"c{i}","uid":"u"}},"#
            ));
        }
        refs.push_str(
            r#"{"apiVersion":"batch/v1","kind":"Job","name":"train","controller":true}]"#,
        );
        let json = format!(r#"{{"metadata":{{"ownerReferences":{refs}}}}}"#);
        let pod: PodView = serde_json::from_str(&json).expect("parses");
        assert_eq!(pod.controller_job(), Some("train"));
    }

    #[test]
    fn duplicate_annotation_is_an_error() {
        let json = r#"{"metadata":{"annotations":{"polyaxon.com/persistence":"a","polyaxon.com/persistence":"b"}}}"#;
        let err = serde_json::from_str::<PodView>(json).expect_err("duplicate");
        assert!(err.to_string().contains("duplicate annotation"), "{err}");
    }

    #[test]
    fn wrong_types_are_errors() {
        for json in [
            r#"{"metadata":{"annotations":{"polyaxon.com/persistence":1}}}"#,
            r#"{"spec":{"containers":"main"}}"#,
            r#"{"spec":{"volumes":[{"emptyDir":{}}]}}"#,
            r#"{"metadata":[]}"#,
            r#"{"spec":[]}"#,
            r#"{"spec":{"containers":[["main"]]}}"#,
            r#"{"spec":{"containers":[null]}}"#,
            r#"{"spec":{"volumes":[["v"]]}}"#,
            r#"{"spec":{"containers":[{"name":"c","env":[["A","1"]]}]}}"#,
            r#"{"spec":{"containers":[{"name":"c","volumeMounts":[["v","/v"]]}]}}"#,
            r#"{"metadata":{"ownerReferences":{"kind":"Job"}}}"#,
            r#"{"metadata":{"ownerReferences":["Job"]}}"#,
            r#"{"metadata":{"ownerReferences":[{"kind":"Job","controller":"yes"}]}}"#,
        ] {
            assert!(serde_json::from_str::<PodView>(json).is_err(), "{json}");
        }
    }
}
