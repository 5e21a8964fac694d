//! The names of the webhook's volumes (SPEC §4: never one the pod already
//! uses for other content).

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;

use super::SCAN_AT_MOST;
use crate::names;
use crate::patch::covers::covers;
use crate::pod::VolumeView;

/// Names the webhook's volumes so that none takes a name the pod already
/// uses for other content (SPEC §4): the preferred name when it is free or
/// already holds exactly our volume (a re-admitted pod), else the first
/// free alternate [`names::alternate_volume_name`]. Deterministic, so a
/// re-admitted pod gets the same names and no patch.
pub(super) struct VolumeNamer<'p, 'a, 'c> {
    pod: &'p [VolumeView<'a>],
    /// The pod's volumes by name, when there are too many to scan.
    by_name: Option<HashMap<&'p str, usize>>,
    /// The names given so far in this review.
    taken: Vec<Cow<'c, str>>,
}

impl<'p, 'a, 'c> VolumeNamer<'p, 'a, 'c> {
    pub(super) fn new(pod: &'p [VolumeView<'a>]) -> Self {
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
    /// volume's JSON under that name. `volume` is the volume under its
    /// preferred name, `json` its JSON: borrowed as it is when the
    /// preferred name is free.
    pub(super) fn name(
        &mut self,
        preferred: &'c str,
        volume: &Value,
        json: &'c [u8],
    ) -> (Cow<'c, str>, Cow<'c, [u8]>) {
        // Each refused candidate is a distinct pod volume or a name given
        // earlier, so this ends within pod volumes + taken + 1 steps.
        for n in 1.. {
            let candidate: Cow<'c, str> = match n {
                1 => Cow::Borrowed(preferred),
                n => Cow::Owned(names::alternate_volume_name(preferred, n)),
            };
            if self.taken.contains(&candidate) {
                continue;
            }
            let renamed = (n > 1).then(|| {
                let mut renamed = volume.clone();
                renamed["name"] = Value::String(candidate.to_string());
                renamed
            });
            let ours = renamed.as_ref().unwrap_or(volume);
            let free = match self.pod_volume(&candidate) {
                None => true,
                Some(have) => serde_json::from_str::<Value>(have.raw.get())
                    .is_ok_and(|have| covers(&have, ours)),
            };
            if free {
                self.taken.push(candidate.clone());
                let json = match renamed {
                    None => Cow::Borrowed(json),
                    Some(v) => {
                        Cow::Owned(serde_json::to_vec(&v).expect("a JSON value always serialises"))
                    }
                };
                return (candidate, json);
            }
        }
        unreachable!("the candidates are unbounded and the pod's volumes are not")
    }
}
