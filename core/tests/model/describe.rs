//! From the implementation's config to the SPEC model's plain-data store
//! description: the one bridge between them, shared by the golden tests and
//! the structured fuzz target (each includes this file next to `spec.rs`).

use persistence_webhook_core::config::{Backend, Source, Store};

use super::spec;

/// A store of the implementation's config, described for the SPEC model
/// through the config's accessors (the model itself stays plain data).
pub fn describe(store: &Store) -> spec::StoreSpec {
    let kind = match store.backend() {
        Backend::Volume {
            mount_path,
            source,
            read_only,
            ..
        } => spec::StoreKind::Volume {
            mount_path: mount_path.clone(),
            source: match source {
                Source::HostPath(p) => spec::Source::HostPath(p.clone()),
                Source::Claim(c) => spec::Source::Claim(c.clone()),
                Source::EmptyDir => spec::Source::EmptyDir,
            },
            read_only: *read_only,
        },
        Backend::Cloud {
            provider,
            bucket,
            credentials,
            endpoint,
            region,
        } => spec::StoreKind::Cloud {
            provider: provider.as_str().to_owned(),
            bucket: bucket.clone(),
            secret: credentials.as_ref().map(|c| c.secret.clone()),
            secret_key: credentials.as_ref().map(|c| c.secret_key.clone()),
            endpoint: endpoint.clone(),
            region: region.clone(),
            sdk_keys: credentials
                .iter()
                .flat_map(|c| c.sdk.keys())
                .map(|(field, key)| (field.to_owned(), key.to_owned()))
                .collect(),
        },
    };
    let volume_name =
        matches!(kind, spec::StoreKind::Volume { .. }).then(|| store.volume_name().to_owned());
    spec::StoreSpec {
        name: store.name().to_owned(),
        kind,
        volume_name,
    }
}
