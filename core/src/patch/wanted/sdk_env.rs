//! SPEC §7: the SDK variables of each provider's default store among the
//! selected ones, and for GCS the key file they point to. The store wrote
//! them when the config loaded ([`Fragments`](crate::config::Fragments)).

use super::*;
use crate::vocabulary::{GCS_CREDENTIALS_DIR, GCS_CREDENTIALS_VOLUME};

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
/// GCS the key file they point to.
pub(super) fn sdk_env<'c>(
    store: &'c Store,
    namer: &mut VolumeNamer<'_, '_, 'c>,
    volumes: &mut Vec<WantVolume<'c>>,
    mounts: &mut Vec<WantMount<'c>>,
    env: &mut Vec<WantEnv<'c>>,
) {
    let fragments = store.fragments();
    if let Some(key) = &fragments.gcs_key {
        let (name, json) = namer.name(GCS_CREDENTIALS_VOLUME, &key.volume, &key.volume_json);
        let mount = match &name {
            Cow::Borrowed(_) => Cow::Borrowed(&*key.mount_json),
            Cow::Owned(name) => {
                let mut json = Vec::new();
                k8s::write_volume_mount(&mut json, name, GCS_CREDENTIALS_DIR, None, true);
                Cow::Owned(json)
            }
        };
        mounts.push(WantMount {
            what: What::GcsKey,
            volume: name.clone(),
            path: Cow::Borrowed(GCS_CREDENTIALS_DIR),
            sub_path: None,
            read_only: true,
            json: mount,
        });
        volumes.push(WantVolume { name, json });
    }
    for e in &fragments.sdk_env {
        env.push(WantEnv {
            name: Cow::Borrowed(e.name),
            value: EnvValue::of(&e.value),
            json: Cow::Borrowed(&e.json),
            group: sdk_env_group(e.name),
        });
    }
}
