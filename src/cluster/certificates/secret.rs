//! The Secret that holds the certificates: read by every replica, created by
//! whichever replica finds it absent (a 409 means another was first: its
//! content is read and used), replaced by the Lease holder with the
//! `resourceVersion` it read as a precondition, so a writer that lost the
//! Lease without knowing it cannot undo a newer rotation step.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use kube::Api;

use super::material::Material;
use super::{post_params, FIELD_MANAGER};

/// The Secret as read.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its `data`, decoded.
    pub data: BTreeMap<String, Vec<u8>>,
    /// The version a replacement must start from.
    pub resource_version: Option<String>,
    /// Its type (immutable: a replacement keeps it).
    pub type_: Option<String>,
}

/// The Secret `name` in `api`'s namespace.
#[derive(Debug, Clone)]
pub struct SecretStore {
    api: Api<Secret>,
    name: String,
}

/// How [`SecretStore::create`] ended.
#[derive(Debug)]
pub enum Created {
    /// Ours was stored.
    Ours(Stored),
    /// Another replica's was there first.
    Theirs,
}

impl SecretStore {
    /// The Secret `name`.
    pub fn new(api: Api<Secret>, name: String) -> SecretStore {
        SecretStore { api, name }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Secret, or `None` when it does not exist.
    pub async fn read(&self) -> Result<Option<Stored>, kube::Error> {
        Ok(self.api.get_opt(&self.name).await?.map(stored))
    }

    /// Creates it with `material`, unless it exists.
    pub async fn create(&self, material: &Material) -> Result<Created, kube::Error> {
        let pp = post_params();
        match self.api.create(&pp, &self.object(material, None)).await {
            Ok(secret) => Ok(Created::Ours(stored(secret))),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Created::Theirs),
            Err(e) => Err(e),
        }
    }

    /// Replaces its content with `material`, if it is still the version
    /// `read`; `Ok(None)` when it changed since (409).
    pub async fn replace(
        &self,
        material: &Material,
        read: &Stored,
    ) -> Result<Option<Stored>, kube::Error> {
        let pp = post_params();
        let mut object = self.object(material, read.resource_version.clone());
        object.type_.clone_from(&read.type_);
        match self.api.replace(&self.name, &pp, &object).await {
            Ok(secret) => Ok(Some(stored(secret))),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn object(&self, material: &Material, resource_version: Option<String>) -> Secret {
        let data = material
            .to_data()
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect();
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version,
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    FIELD_MANAGER.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Secret::default()
        }
    }
}

fn stored(secret: Secret) -> Stored {
    Stored {
        data: secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
        resource_version: secret.metadata.resource_version,
        type_: secret.type_,
    }
}
