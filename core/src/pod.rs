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

use serde::de::{self, DeserializeSeed as _, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::text::JsonStr;
use crate::vocabulary::{
    ANNOTATION_INJECTED, ANNOTATION_OUTPUTS_SUBPATH, ANNOTATION_PERSISTENCE,
    ANNOTATION_UNIQUE_NAME, LABEL_INJECTION, OPT_OUT, RESERVED_ENV, VOLUME_PREFIX,
};

mod mounts;

pub use mounts::{Mount, MountIter, Mounts};
use mounts::{MountExtra, MountList, MountRecord};

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

    fn mount(&self, name: &str, mount_path: &str) -> bool {
        let Keep::Ours(r) = self else {
            return true;
        };
        if name.starts_with(VOLUME_PREFIX) || r.outputs_roots.contains("/") {
            return true;
        }
        let path = crate::names::clean_path(mount_path);
        // Under a root: the root, then `/`. Each root is compared, not each
        // of the path's prefixes looked up: a path of many `/` would hash
        // prefix after prefix, quadratic in its length (a 160 KB path took
        // 1.8 s). The roots are the config's, few and short.
        r.mount_paths.contains(path.as_ref())
            || r.outputs_roots.iter().any(|root| {
                !root.is_empty()
                    && path
                        .strip_prefix(root.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
    }
}

/// How a pod is read: which entries to keep, and the whole text the
/// deserializer reads (the pod or the review around it), of which kept
/// mounts are recorded as spans (see [`Mounts`]). A text of `""` (unknown)
/// only costs a copy of each kept mount's strings.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'k, 'de> {
    /// Which entries to keep.
    pub keep: Keep<'k>,
    /// The text being read.
    pub text: &'de str,
}

/// Reads a pod object (or null) as `Reading` says.
pub struct PodSeed<'k, 'de>(pub Reading<'k, 'de>);

impl<'de> de::DeserializeSeed<'de> for PodSeed<'_, 'de> {
    type Value = Option<PodView<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(SeededObject(PodVisitor(self.0)))
    }
}

/// Reads a pod object from `text` with `keep`'s entries.
pub fn read<'a>(text: &'a str, keep: Keep<'_>) -> Result<PodView<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let pod = de::Deserializer::deserialize_map(&mut de, PodVisitor(Reading { keep, text }))?;
    de.end()?;
    Ok(pod)
}

impl<'de: 'a, 'a> Deserialize<'de> for PodView<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let reading = Reading {
            keep: Keep::All,
            text: "",
        };
        d.deserialize_map(PodVisitor(reading))
    }
}

/// Sets a field once: a second occurrence is serde's "duplicate field"
/// (the review's codec reads its maps with it too).
pub(crate) fn once<T, E: de::Error>(
    slot: &mut Option<T>,
    key: &'static str,
    value: T,
) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(key));
    }
    Ok(())
}

struct PodVisitor<'k, 'de>(Reading<'k, 'de>);

impl<'de> Visitor<'de> for PodVisitor<'_, 'de> {
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
                    map.next_value_seed(SeededObject(derived::<Metadata<'de>>()))?,
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
                while let Some(r) = seq.next_element_seed(Item(derived::<OwnerRef<'de>>()))? {
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
    /// `spec.containers` (empty when absent).
    pub containers: Containers<'a>,
    /// `spec.initContainers` (empty when absent).
    pub init_containers: Containers<'a>,
}

impl<'a> Spec<'a> {
    /// Both container lists, init containers first, each with its field
    /// name.
    pub fn lists(&self) -> [(&'static str, &Containers<'a>); 2] {
        [
            ("initContainers", &self.init_containers),
            ("containers", &self.containers),
        ]
    }
}

struct SpecVisitor<'k, 'de>(Reading<'k, 'de>);

impl<'de> Visitor<'de> for SpecVisitor<'_, 'de> {
    type Value = Spec<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Spec")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut volumes, mut containers, mut init) = (None, None, None);
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            let (slot, key) = match &*key {
                "volumes" => {
                    once(&mut volumes, "volumes", map.next_value_seed(OurVolumes)?)?;
                    continue;
                }
                "containers" => (&mut containers, "containers"),
                "initContainers" => (&mut init, "initContainers"),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let mut list = Containers {
                source: self.0.text,
                ..Containers::default()
            };
            map.next_value_seed(ContainerList {
                list: &mut list,
                keep: self.0.keep,
            })?;
            once(slot, key, list)?;
        }
        Ok(Spec {
            volumes: volumes.flatten(),
            containers: containers.unwrap_or_default(),
            init_containers: init.unwrap_or_default(),
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

/// `spec.containers` or `spec.initContainers`, compact: a pod of many
/// tiny containers costs about its JSON, not a struct each. Per container a
/// byte of flags; the names one after another in one string; the env vars
/// a review can need (see [`Keep`]) in one list, with the index of their
/// container; the mounts it can need as records of 16 bytes (spans of the
/// text read, see [`Mounts`]) in one list, with where the run of each
/// container that keeps some ends. Read with [`Containers::iter`].
#[derive(Debug, Default)]
pub struct Containers<'a> {
    /// Per container, in order: [`NAMED`], [`HAS_ENV`], [`HAS_MOUNTS`].
    flags: Vec<u8>,
    /// The non-empty names, one after another.
    names: String,
    /// Where each non-empty name ends in `names`.
    name_ends: Vec<u32>,
    /// The kept env vars of every container, in order.
    env: Vec<Env<'a>>,
    /// The index of each kept env var's container.
    env_owners: Vec<u32>,
    /// The text the list was read from: kept mounts' strings are spans of it.
    source: &'a str,
    /// Kept mounts' strings that are not in `source` as they read.
    arena: String,
    /// The kept mounts of every container, in order.
    mounts: Vec<MountRecord>,
    /// Per container with kept mounts, in order: its index and where its
    /// run of `mounts` ends (nothing for a container that keeps none, so
    /// that a pod without kept mounts allocates nothing for them).
    mount_runs: Vec<(u32, u32)>,
    /// `subPath` and `readOnly` of the kept mounts that have either, in
    /// order.
    mount_extras: Vec<MountExtra>,
}

/// The container has a non-empty name.
const NAMED: u8 = 1;
/// The container has an `env` list (perhaps empty).
const HAS_ENV: u8 = 2;
/// The container has a `volumeMounts` list (perhaps empty).
const HAS_MOUNTS: u8 = 4;

impl<'a> Containers<'a> {
    /// How many containers the list has.
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    /// Whether the list has no container (or was absent).
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Each container in order.
    pub fn iter(&self) -> ContainerIter<'_, 'a> {
        ContainerIter {
            list: self,
            index: 0,
            name_start: 0,
            named: 0,
            env: 0,
            mount_runs: 0,
            mounts: 0,
            extras: 0,
        }
    }

    /// Each container's name in order (`""` for a container without one).
    pub fn names(&self) -> impl Iterator<Item = &str> + Clone {
        let mut ends = self.name_ends.iter();
        let mut start = 0;
        let names = &self.names;
        self.flags.iter().map(move |f| {
            if f & NAMED == 0 {
                return "";
            }
            let end = ends.next().map_or(start, |e| *e as usize);
            let name = &names[start..end];
            start = end;
            name
        })
    }

    /// Packs a container read by [`ContainerVisitor`] (its mounts, if
    /// any, already kept as it read them).
    fn push(&mut self, c: ContainerIn<'a>) -> Result<(), &'static str> {
        let too_many = || "more containers, or bytes of container names, than 4 Gi";
        let index = u32::try_from(self.flags.len()).map_err(|_| too_many())?;
        let mut flags = 0;
        if !c.name.is_empty() {
            flags |= NAMED;
            self.names.push_str(&c.name);
            let end = u32::try_from(self.names.len()).map_err(|_| too_many())?;
            self.name_ends.push(end);
        }
        if let Some(env) = c.env {
            flags |= HAS_ENV;
            self.env_owners
                .extend(std::iter::repeat_n(index, env.len()));
            append(&mut self.env, env);
        }
        if c.has_mounts {
            flags |= HAS_MOUNTS;
            let start = self.mount_runs.last().map_or(0, |(_, end)| *end);
            let end = u32::try_from(self.mounts.len()).map_err(|_| too_many())?;
            if end > start {
                self.mount_runs.push((index, end));
            }
        }
        self.flags.push(flags);
        Ok(())
    }
}

/// Appends `items` to `list`, taking the vector itself when the list is
/// empty: one container of many entries is not copied.
fn append<T>(list: &mut Vec<T>, mut items: Vec<T>) {
    if list.is_empty() {
        std::mem::swap(list, &mut items);
    } else {
        list.append(&mut items);
    }
}

/// A container or init container, as [`Containers::iter`] gives it.
#[derive(Debug, Clone, Copy)]
pub struct Container<'v, 'a> {
    /// Its index in its list.
    pub index: usize,
    /// `name` (`""` when absent).
    pub name: &'v str,
    /// `env`, only the variables a review can need (see [`Keep`]); `None`
    /// when absent.
    pub env: Option<&'v [Env<'a>]>,
    /// `volumeMounts`, only the mounts a review can need (see [`Keep`]);
    /// `None` when absent.
    pub volume_mounts: Option<Mounts<'v>>,
}

/// The iterator of [`Containers::iter`].
pub struct ContainerIter<'v, 'a> {
    list: &'v Containers<'a>,
    index: usize,
    name_start: usize,
    named: usize,
    env: usize,
    /// The next container's run in `mount_runs`, if it has one.
    mount_runs: usize,
    /// Where the next container's mounts start.
    mounts: usize,
    /// Where the next container's mounts' extras start.
    extras: usize,
}

impl<'v, 'a> Iterator for ContainerIter<'v, 'a> {
    type Item = Container<'v, 'a>;
    fn next(&mut self) -> Option<Self::Item> {
        let list = self.list;
        let flags = *list.flags.get(self.index)?;
        let index = self.index;
        self.index += 1;
        let mut name = "";
        if flags & NAMED != 0 {
            let end = list.name_ends[self.named] as usize;
            name = &list.names[self.name_start..end];
            self.name_start = end;
            self.named += 1;
        }
        // The entries of this container: the run of its index.
        let run = |owners: &[u32], from: &mut usize| {
            let start = *from;
            while owners.get(*from).is_some_and(|o| *o as usize == index) {
                *from += 1;
            }
            start..*from
        };
        let env = run(&list.env_owners, &mut self.env);
        let mut volume_mounts = None;
        if flags & HAS_MOUNTS != 0 {
            let start = self.mounts;
            let mut end = start;
            if let Some((_, e)) = list
                .mount_runs
                .get(self.mount_runs)
                .filter(|(owner, _)| *owner as usize == index)
            {
                end = *e as usize;
                self.mount_runs += 1;
            }
            self.mounts = end;
            let extras = self.extras;
            self.extras += mounts::extras_before(&list.mount_extras, extras, end);
            volume_mounts = Some(mounts::mounts(list, start..end, extras..self.extras));
        }
        Some(Container {
            index,
            name,
            env: (flags & HAS_ENV != 0).then(|| &list.env[env]),
            volume_mounts,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.list.flags.len() - self.index;
        (left, Some(left))
    }
}

/// One container as read, before [`Containers::push`] packs it.
struct ContainerIn<'a> {
    name: Cow<'a, str>,
    env: Option<Vec<Env<'a>>>,
    /// Whether it has a `volumeMounts` list (its kept mounts are already
    /// in the list).
    has_mounts: bool,
}

/// `spec.containers` or `spec.initContainers` (or null), each container
/// packed into `list` as it is read.
struct ContainerList<'l, 'k, 'de> {
    list: &'l mut Containers<'de>,
    keep: Keep<'k>,
}

impl<'de> de::DeserializeSeed<'de> for ContainerList<'_, '_, 'de> {
    type Value = Option<()>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContainerList<'_, '_, 'de> {
    type Value = Option<()>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of JSON objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let keep = self.keep;
        while let Some(c) = seq.next_element_seed(Item(ContainerVisitor {
            list: &mut *self.list,
            keep,
        }))? {
            self.list.push(c).map_err(de::Error::custom)?;
        }
        Ok(Some(()))
    }
}

/// One container: its name and kept env vars returned, its kept mounts
/// pushed to `list` as they are read.
struct ContainerVisitor<'l, 'k, 'de> {
    list: &'l mut Containers<'de>,
    keep: Keep<'k>,
}

impl<'de> Visitor<'de> for ContainerVisitor<'_, '_, 'de> {
    type Value = ContainerIn<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Container")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let keep = self.keep;
        let (mut name, mut env, mut mounts) = (None, None, None);
        while let Some(key) = map.next_key::<JsonStr<'de>>()? {
            match &*key {
                "name" => once(&mut name, "name", map.next_value::<JsonStr<'de>>()?.0)?,
                // Every entry is read; only those `keep` names are kept (a
                // list of none allocates nothing).
                "env" => {
                    let mut kept: Vec<Env<'de>> = Vec::new();
                    let list = map.next_value_seed(Objects(derived(), |e: Env<'de>| {
                        if keep.env(&e.name) && new_kind(&kept, &e) {
                            kept.push(e);
                        }
                        Ok(())
                    }))?;
                    once(&mut env, "env", list.map(|()| kept))?;
                }
                "volumeMounts" => {
                    let list = map.next_value_seed(MountList {
                        list: &mut *self.list,
                        keep,
                    })?;
                    once(&mut mounts, "volumeMounts", list)?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ContainerIn {
            name: name.unwrap_or_default(),
            env: env.flatten(),
            has_mounts: mounts.flatten().is_some(),
        })
    }
}

/// Whether `e` tells the decision something the container's `kept` env
/// vars do not: its name is new, or it holds a value (as the decision
/// compares values: `value`, whether `valueFrom` is set, the secret key
/// it names) that no kept one of that name holds, and fewer than two of
/// that name are kept. The decision asks of each name of ours only
/// whether it occurs, where first, and whether every occurrence holds
/// ours: two different values already answer "not all ours", whatever
/// ours is. So a container that repeats a name of ours costs at most two
/// entries, not one per repetition (a body of 300,000 `AWS_REGION`
/// entries kept them all).
fn new_kind(kept: &[Env<'_>], e: &Env<'_>) -> bool {
    fn secret<'x>(e: &'x Env<'_>) -> Option<(Option<&'x str>, &'x str)> {
        let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
        Some((r.name.as_deref(), r.key.as_ref()))
    }
    let same_name = || kept.iter().filter(|k| k.name == e.name);
    let same_value = |k: &Env<'_>| {
        k.value == e.value
            && k.value_from.is_some() == e.value_from.is_some()
            && secret(k) == secret(e)
    };
    !same_name().any(same_value) && same_name().count() < 2
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

/// A map visitor for a type with a derived `Deserialize`.
struct Derived<T>(std::marker::PhantomData<T>);

fn derived<T>() -> Derived<T> {
    Derived(std::marker::PhantomData)
}

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

/// A JSON object read by map visitor `V`, not null: an item of a list.
struct Item<V>(V);

impl<'de, V: Visitor<'de>> de::DeserializeSeed<'de> for Item<V> {
    type Value = V::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        SeededObject(self.0)
            .deserialize(d)?
            .ok_or_else(|| de::Error::custom("expected a JSON object, found null"))
    }
}

/// A list of JSON objects (or null, `None`), each read by map visitor `V`
/// (not a list of lists, see [`object_or_null`]) and handed to `K`, which
/// keeps it or not (or refuses it, saying why): nothing of the list is held
/// but what `K` keeps.
struct Objects<V, K>(V, K);

impl<'de, V, K> de::DeserializeSeed<'de> for Objects<V, K>
where
    V: Visitor<'de> + Clone,
    K: FnMut(V::Value) -> Result<(), &'static str>,
{
    type Value = Option<()>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, V, K> Visitor<'de> for Objects<V, K>
where
    V: Visitor<'de> + Clone,
    K: FnMut(V::Value) -> Result<(), &'static str>,
{
    type Value = Option<()>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of JSON objects")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: de::SeqAccess<'de>>(mut self, mut seq: S) -> Result<Self::Value, S::Error> {
        while let Some(item) = seq.next_element_seed(Item(self.0.clone()))? {
            (self.1)(item).map_err(de::Error::custom)?;
        }
        Ok(Some(()))
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
    SeededObject(derived::<T>()).deserialize(d)
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

    /// Names of every container and init container, init containers
    /// first, read from the view as they are asked for (never collected).
    pub fn container_names(&self) -> impl Iterator<Item = &str> + Clone {
        let spec = self.spec.as_ref();
        let init = spec.into_iter().flat_map(|s| s.init_containers.names());
        let main = spec.into_iter().flat_map(|s| s.containers.names());
        init.chain(main)
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
        let c = spec.containers.iter().next().expect("a container");
        let env = c.env.expect("env");
        assert_eq!(env[0].value.as_deref(), Some("1"));
        let r = env[1]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        assert_eq!(r.map(|r| r.key.as_ref()), Some("k"));
        assert_eq!(pod.container_names().collect::<Vec<_>>(), vec!["c"]);
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
        let spec = pod.spec.expect("spec");
        let containers: Vec<Container> = spec.containers.iter().collect();
        let names = |c: &Container| -> Option<Vec<String>> {
            c.env
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
        let all = all.spec.expect("spec");
        let first = all.containers.iter().next().expect("a container");
        assert_eq!(
            first.env.map(<[Env]>::len),
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
        assert_eq!(kept_mounts(json, &relevant), ["pw-x", "b", "c", "e"]);
    }

    #[test]
    fn a_path_of_many_slashes_is_kept_or_not_in_linear_time() {
        // Not a timing: each `/` of such a path used to hash the prefix
        // before it to look it up among the outputs roots, 2.5 * 10^11
        // bytes for this one (minutes); each root is compared once now.
        let relevant = Relevant {
            outputs_roots: ["/out".to_owned(), "/b".to_owned()].into(),
            ..Relevant::default()
        };
        let slashes = "/a".repeat(500_000);
        let json = format!(
            r#"{{"spec":{{"containers":[{{"name":"c","volumeMounts":[
                {{"name":"outside","mountPath":"{slashes}"}},
                {{"name":"beneath","mountPath":"/out{slashes}"}},
                {{"name":"root","mountPath":"/out"}},
                {{"name":"prefix","mountPath":"/outer/a"}},
                {{"name":"dirty","mountPath":"b//./a/"}}]}}]}}}}"#
        );
        assert_eq!(kept_mounts(&json, &relevant), ["beneath", "dirty"]);
    }

    /// The names of the first container's mounts the view keeps.
    fn kept_mounts(json: &str, relevant: &Relevant) -> Vec<String> {
        let pod = read(json, Keep::Ours(relevant)).expect("parses");
        let spec = pod.spec.expect("spec");
        let c = spec.containers.iter().next().expect("a container");
        c.volume_mounts
            .into_iter()
            .flatten()
            .map(|m| m.name.into_owned())
            .collect()
    }

    #[test]
    fn containers_are_packed_and_read_back_in_order() {
        let json = r#"{"spec":{"containers":[{},{"name":"a","env":[]},
            {"name":"","volumeMounts":[{"name":"pw-x","mountPath":"/x"}]},
            {"name":"b\u0063","env":[{"name":"AWS_REGION","value":"1"},{"name":"A"},
                {"name":"AWS_REGION","value":"2"}],"volumeMounts":null},
            {"name":"d","env":null,"volumeMounts":[]}]}}"#;
        let relevant = Relevant::default();
        let pod = read(json, Keep::Ours(&relevant)).expect("parses");
        let spec = pod.spec.expect("spec");
        let got: Vec<_> = spec
            .containers
            .iter()
            .map(|c| {
                let env = c.env.map(|e| {
                    e.iter()
                        .map(|e| e.value.as_deref().unwrap_or("-"))
                        .collect::<Vec<_>>()
                });
                (c.index, c.name, env, c.volume_mounts.map(|m| m.len()))
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "", None, None),
                (1, "a", Some(vec![]), None),
                (2, "", None, Some(1)),
                (3, "bc", Some(vec!["1", "2"]), None),
                (4, "d", None, Some(0)),
            ]
        );
        let names: Vec<&str> = spec.containers.names().collect();
        assert_eq!(names, ["", "a", "", "bc", "d"]);
        assert_eq!(spec.containers.len(), 5);
        assert!(spec.init_containers.is_empty());
        let err = read(r#"{"spec":{"containers":[],"containers":null}}"#, Keep::All);
        assert!(err.is_err(), "a second containers list is refused");
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
