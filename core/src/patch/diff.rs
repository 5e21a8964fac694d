//! The diff of what the selection asks for ([`Wanted`]) against the pod:
//! the JSON Patch operations that add what is missing, and the conflicts
//! with what the pod already has. It only adds: pointers are built from
//! tokens (annotation keys hold `/`), a missing parent list or map is added
//! before its children, and what is already there with the same value is
//! skipped, so that admitting the patched pod again yields no patch.

use super::json::{write_list, Ops, PatchJson};
use super::wanted::{EnvValue, WantMount, Wanted};
use super::{Conflict, Kept};
use crate::k8s;
use crate::names;
use crate::pod::{Container, Env, Mount, PodView};
use crate::selection::Selection;
use crate::text::clip;
use crate::vocabulary::{
    sdk_env_group, ANNOTATION_INJECTED, ANNOTATION_PERSISTENCE, SDK_ENV_GROUPS,
};

/// The patch for `pod`, or `None` when it already has everything. `wanted`
/// is [`wanted`](fn@crate::patch::wanted) of the same selection (checked
/// against the bounds first); `capacity` is the bytes to reserve (the
/// estimate, an upper bound), so the buffer is not grown and copied.
pub fn build(
    pod: &PodView<'_>,
    selection: &Selection<'_>,
    wanted: &Wanted<'_>,
    kept: &mut Vec<Kept>,
    capacity: usize,
) -> Result<Option<PatchJson>, Conflict> {
    let mut ops = Ops::with_capacity(capacity);

    annotation_ops(pod, &wanted.annotation, &mut ops);
    let Some(spec) = &pod.spec else {
        // No spec at all: nothing to mount into; API validation refuses the pod.
        return Ok(ops.finish());
    };
    volume_ops(spec.volumes.as_deref(), wanted, &mut ops);
    for (list, containers) in spec.lists() {
        for c in containers.iter() {
            if selection.targets(c.name) {
                container_ops(list, &c, wanted, &mut ops, kept)?;
            } else {
                untargeted_mounts(list, &c, wanted)?;
            }
        }
    }
    Ok(ops.finish())
}

fn annotation_ops(pod: &PodView<'_>, value: &str, ops: &mut Ops) {
    let meta = pod.metadata.as_ref();
    // `{"<key>":"<value>"}`: the one entry of the map we add.
    let entry = |out: &mut Vec<u8>| {
        out.push(b'{');
        k8s::write_str(out, ANNOTATION_INJECTED);
        out.push(b':');
        k8s::write_str(out, value);
        out.push(b'}');
    };
    match meta.and_then(|m| m.annotations.as_ref()) {
        Some(a) if a.injected.as_deref() == Some(value) => {}
        Some(_) => ops.add(["metadata", "annotations", ANNOTATION_INJECTED], |out| {
            k8s::write_str(out, value)
        }),
        None if meta.is_some() => ops.add(["metadata", "annotations"], entry),
        None => ops.add(["metadata"], |out| {
            out.extend_from_slice(br#"{"annotations":"#);
            entry(out);
            out.push(b'}');
        }),
    }
}

fn volume_ops(existing: Option<&[crate::pod::VolumeView<'_>]>, wanted: &Wanted<'_>, ops: &mut Ops) {
    // One pass over the pod's volumes, one lookup each. A pod volume with
    // one of our names already holds our volume: `wanted` chose the names
    // so (SPEC §4).
    let mut present = vec![false; wanted.volumes.len()];
    for v in existing.unwrap_or_default() {
        if let Some(i) = wanted.volume_named(&v.name) {
            present[i] = true;
        }
    }
    let missing = not_present(&wanted.volumes, &present, |v| &v.json);
    append(&["spec", "volumes"], existing.is_some(), &missing, ops);
}

/// The JSON of each of `items` the pod does not have yet (`present[i]`
/// false), in order.
fn not_present<'i, T>(
    items: &'i [T],
    present: &[bool],
    json: impl Fn(&'i T) -> &'i [u8],
) -> Vec<&'i [u8]> {
    items
        .iter()
        .zip(present)
        .filter(|(_, present)| !**present)
        .map(|(item, _)| json(item))
        .collect()
}

/// Adds `items` to the list at `path`: one `-` append each when the list
/// exists, else the whole list at once (its parent must exist first).
fn append(path: &[&str], exists: bool, items: &[&[u8]], ops: &mut Ops) {
    if items.is_empty() {
        return;
    }
    if exists {
        ops.add_each(path.iter().copied().chain(["-"]), items);
    } else {
        ops.add(path.iter().copied(), |out| {
            write_list(out, items.iter().copied())
        });
    }
}

fn container_ops(
    list: &'static str,
    c: &Container<'_, '_>,
    wanted: &Wanted<'_>,
    ops: &mut Ops,
    kept: &mut Vec<Kept>,
) -> Result<(), Conflict> {
    let position = c.index;
    let index = c.index.to_string();
    // One pass over the container's mounts, one lookup each: every mount of
    // one of our volumes must be exactly ours, and nothing else may sit at
    // one of our paths.
    let mut present = vec![false; wanted.mounts.len()];
    for h in c.volume_mounts.unwrap_or_default() {
        let path = names::clean_path(&h.mount_path);
        if let Some(i) = wanted.mount_of_volume(&h.name) {
            let m = &wanted.mounts[i];
            let exact = path == m.path
                && h.sub_path.as_deref() == m.sub_path.as_deref()
                && h.read_only.unwrap_or(false) == m.read_only;
            if !exact {
                return Err(foreign_mount(list, &index, c, &h, m, true));
            }
            present[i] = true;
        } else if let Some(i) = wanted.mount_at(&path) {
            let m = &wanted.mounts[i];
            return Err(Conflict::MountPath {
                field: mount_field(list, &index, &h),
                container: clip(c.name),
                path: clip(&m.path),
                existing: clip(&h.name),
                what: m.what.text(),
            });
        }
    }
    let mounts = not_present(&wanted.mounts, &present, |m| &m.json);
    append(
        &["spec", list, &index, "volumeMounts"],
        c.volume_mounts.is_some(),
        &mounts,
        ops,
    );

    // Every occurrence of a name of ours counts: the runtime uses the last
    // one, so a first one that matches proves nothing (SPEC §5).
    let mut present = vec![false; wanted.env.len()];
    // SDK variable groups the container sets itself (SPEC §7): kept whole.
    let mut own_groups = [false; SDK_ENV_GROUPS.len()];
    for h in c.env.unwrap_or_default() {
        if wanted.has_sdk_env {
            if let Some(g) = sdk_env_group(&h.name) {
                own_groups[g] = true;
            }
        }
        let Some(i) = wanted.env_named(&h.name) else {
            continue;
        };
        let e = &wanted.env[i];
        if e.group.is_none() && !same_env(h, &e.value) {
            return Err(Conflict::Env {
                field: format!("spec.{list}[{index}].env[{}]", e.name),
                container: clip(c.name),
                name: e.name.to_string(),
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
    if wanted.has_sdk_env && own_groups.contains(&true) {
        let container_env = c.env.unwrap_or_default();
        let mut left_out = Vec::new();
        let mut kept_groups = [false; SDK_ENV_GROUPS.len()];
        for (e, present) in wanted.env.iter().zip(present.iter_mut()) {
            let Some(g) = e.group.filter(|g| own_groups[*g]) else {
                continue;
            };
            kept_groups[g] = true;
            // Left out, unless every occurrence already holds exactly ours.
            let ours = *present
                && container_env
                    .iter()
                    .filter(|h| h.name == e.name)
                    .all(|h| same_env(h, &e.value));
            if !ours {
                left_out.push(e.name.to_string());
            }
            *present = true;
        }
        if !left_out.is_empty() {
            // The container's own variables of those groups, once each, in
            // the order of the webhook's variables they stand for.
            let mut own: Vec<String> = Vec::new();
            let groups = wanted.env.iter().filter_map(|e| e.group);
            for g in groups.filter(|g| kept_groups[*g]) {
                for h in container_env {
                    let mine = sdk_env_group(&h.name) == Some(g);
                    if mine && !own.iter().any(|o| h.name == o.as_str()) {
                        own.push(h.name.to_string());
                    }
                }
            }
            kept.push(Kept {
                list,
                index: position,
                container: clip(c.name),
                own,
                left_out,
            });
        }
    }
    let env = not_present(&wanted.env, &present, |e| &e.json);
    append(&["spec", list, &index, "env"], c.env.is_some(), &env, ops);
    Ok(())
}

/// A container the selection leaves out may not mount our volumes at all:
/// `containers:` must not be a way around the sub-path.
fn untargeted_mounts(
    list: &str,
    c: &Container<'_, '_>,
    wanted: &Wanted<'_>,
) -> Result<(), Conflict> {
    for h in c.volume_mounts.unwrap_or_default() {
        if let Some(i) = wanted.mount_of_volume(&h.name) {
            let index = c.index.to_string();
            return Err(foreign_mount(list, &index, c, &h, &wanted.mounts[i], false));
        }
    }
    Ok(())
}

/// A pod mount's field path, keyed by its mount path (the list's merge key).
fn mount_field(list: &str, index: &str, h: &Mount<'_>) -> String {
    format!("spec.{list}[{index}].volumeMounts[{}]", clip(&h.mount_path))
}

fn foreign_mount(
    list: &str,
    index: &str,
    c: &Container<'_, '_>,
    h: &Mount<'_>,
    ours: &WantMount<'_>,
    targeted: bool,
) -> Conflict {
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
        field: mount_field(list, index, h),
        container: clip(c.name),
        mount: format!("{:?}{sub_path}{read_write}", clip(&h.mount_path)),
        volume: clip(&h.name),
        what: ours.what.text(),
        why,
    }
}

pub(super) fn same_env(have: &Env<'_>, ours: &EnvValue<'_>) -> bool {
    let secret_ref = have
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref());
    match ours {
        EnvValue::Plain(v) => {
            have.value.as_deref() == Some(v.as_ref()) && have.value_from.is_none()
        }
        EnvValue::Secret { secret, key } => {
            have.value.as_deref().unwrap_or_default().is_empty()
                && secret_ref.is_some_and(|r| r.key == *key && r.name.as_deref() == Some(*secret))
        }
    }
}
