//! The Kubernetes objects `check` reads: the one place in the command that
//! names `k8s_openapi` paths, and the two views of a Secret that keep what
//! the checks need and nothing else.
//!
//! A Secret's values are skipped while the response is parsed (serde's
//! `IgnoredAny`), so they never reach a field, a log line or the report:
//! a store's Secret keeps only its key names, the serving Secret only its
//! certificates (`tls.crt`, `ca.crt`; never `tls.key`). Neither keeps the
//! metadata beyond the name, because `kubectl apply` copies the whole
//! object, values included, into the `last-applied-configuration`
//! annotation.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

pub use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, WebhookClientConfig,
};
pub use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
pub use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EndpointAddress, EndpointSubset, Endpoints, KeyToPath, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimStatus, PodSpec, PodTemplateSpec, Service, Volume,
};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
pub use k8s_openapi::apimachinery::pkg::version::Info as VersionInfo;
pub use k8s_openapi::ByteString;

/// The result of reading one object by name.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    /// It exists.
    Found(T),
    /// 404: it does not exist.
    Missing,
    /// Any other answer (forbidden, timeout): the message says which.
    Error(String),
}

impl<T> Lookup<T> {
    /// The object, if found.
    pub fn found(&self) -> Option<&T> {
        match self {
            Lookup::Found(t) => Some(t),
            _ => None,
        }
    }
}

/// The warning for an object `check` could not read (`what`: "it", "its
/// Endpoints"): the error, and the grant of `manifests/check` that reads
/// `resource`.
pub fn unreadable(
    id: &'static str,
    title: impl Into<String>,
    what: &str,
    error: &str,
    resource: &str,
) -> super::report::Check {
    super::report::Check::warn(
        id,
        title,
        format!("cannot read {what}: {error}"),
        format!("run check with the permissions of manifests/check (get on {resource})"),
    )
}

/// A Secret of a store: its name and the names of its keys (`data` and
/// `stringData`), nothing else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretKeys {
    metadata: ObjectMeta,
    /// The key names.
    pub keys: BTreeSet<String>,
}

impl SecretKeys {
    /// A Secret named `name` with these keys (for tests and the probe).
    pub fn new(name: &str, keys: impl IntoIterator<Item = impl Into<String>>) -> SecretKeys {
        SecretKeys {
            metadata: name_only(Some(name.to_owned())),
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }
}

/// The serving Secret: the certificates it holds, never the key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServingSecret {
    metadata: ObjectMeta,
    /// `tls.crt`: the serving certificate chain, PEM.
    pub tls_crt: Option<Vec<u8>>,
    /// `ca.crt` (cert-manager writes it): the issuing CA, PEM.
    pub ca_crt: Option<Vec<u8>>,
    /// Every key name, so a missing `tls.crt` can say what there is.
    pub keys: BTreeSet<String>,
}

impl ServingSecret {
    /// A Secret named `name` holding `tls.crt` (for tests).
    pub fn new(name: &str, tls_crt: Option<&str>) -> ServingSecret {
        ServingSecret {
            metadata: name_only(Some(name.to_owned())),
            tls_crt: tls_crt.map(|c| c.as_bytes().to_vec()),
            ca_crt: None,
            keys: tls_crt.iter().map(|_| "tls.crt".to_owned()).collect(),
        }
    }
}

fn name_only(name: Option<String>) -> ObjectMeta {
    ObjectMeta {
        name,
        ..ObjectMeta::default()
    }
}

/// `metadata.name` alone; every other field is skipped unread.
#[derive(Deserialize)]
struct NameOnly {
    name: Option<String>,
}

/// The keys of a `data` or `stringData` map; each value is skipped.
struct KeysOnly(BTreeSet<String>);

impl<'de> Deserialize<'de> for KeysOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeysOnly;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of Secret keys")
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeysOnly, E> {
                Ok(KeysOnly(BTreeSet::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeysOnly, A::Error> {
                let mut keys = BTreeSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.insert(key);
                }
                Ok(KeysOnly(keys))
            }
        }
        d.deserialize_any(V)
    }
}

/// The serving Secret's `data`: the two certificates decoded, every other
/// value (the private key) skipped unread.
#[derive(Default)]
struct CertsOnly {
    tls_crt: Option<Vec<u8>>,
    ca_crt: Option<Vec<u8>>,
    keys: BTreeSet<String>,
}

impl<'de> Deserialize<'de> for CertsOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CertsOnly;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of Secret keys")
            }
            fn visit_unit<E: de::Error>(self) -> Result<CertsOnly, E> {
                Ok(CertsOnly::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CertsOnly, A::Error> {
                let mut out = CertsOnly::default();
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "tls.crt" => Some(&mut out.tls_crt),
                        "ca.crt" => Some(&mut out.ca_crt),
                        _ => None,
                    };
                    match slot {
                        Some(slot) => {
                            let b64: String = map.next_value()?;
                            let pem = base64::engine::general_purpose::STANDARD
                                .decode(b64.trim())
                                .map_err(|e| de::Error::custom(format!("{key}: {e}")))?;
                            *slot = Some(pem);
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    out.keys.insert(key);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a Secret's top-level fields, handing `data` to `on_data`,
/// `stringData`'s keys to `on_string_data` and keeping only the name.
fn secret_fields<'de, A, T>(
    mut map: A,
    mut on_data: impl FnMut(&mut A) -> Result<(), A::Error>,
    mut on_string_data: impl FnMut(BTreeSet<String>),
    build: impl FnOnce(ObjectMeta) -> T,
) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
{
    let mut name = None;
    while let Some(field) = map.next_key::<String>()? {
        match field.as_str() {
            "metadata" => name = map.next_value::<NameOnly>()?.name,
            "data" => on_data(&mut map)?,
            "stringData" => on_string_data(map.next_value::<KeysOnly>()?.0),
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(build(name_only(name)))
}

impl<'de> Deserialize<'de> for SecretKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Secret")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretKeys, A::Error> {
                let mut keys = BTreeSet::new();
                let mut more = BTreeSet::new();
                let mut out = secret_fields(
                    map,
                    |m| {
                        keys.extend(m.next_value::<KeysOnly>()?.0);
                        Ok(())
                    },
                    |k| more.extend(k),
                    |metadata| SecretKeys {
                        metadata,
                        keys: BTreeSet::new(),
                    },
                )?;
                keys.extend(more);
                out.keys = keys;
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for ServingSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServingSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Secret")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServingSecret, A::Error> {
                let mut certs = None;
                let mut more = BTreeSet::new();
                let mut out = secret_fields(
                    map,
                    |m| {
                        certs = Some(m.next_value::<CertsOnly>()?);
                        Ok(())
                    },
                    |k| more.extend(k),
                    |metadata| ServingSecret {
                        metadata,
                        ..ServingSecret::default()
                    },
                )?;
                if let Some(c) = certs {
                    out.tls_crt = c.tls_crt;
                    out.ca_crt = c.ca_crt;
                    out.keys = c.keys;
                }
                out.keys.extend(more);
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

macro_rules! secret_resource {
    ($t:ty) => {
        impl k8s_openapi::Resource for $t {
            const API_VERSION: &'static str = "v1";
            const GROUP: &'static str = "";
            const KIND: &'static str = "Secret";
            const VERSION: &'static str = "v1";
            const URL_PATH_SEGMENT: &'static str = "secrets";
            type Scope = k8s_openapi::NamespaceResourceScope;
        }
        impl k8s_openapi::Metadata for $t {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

secret_resource!(SecretKeys);
secret_resource!(ServingSecret);

#[cfg(test)]
mod tests {
    use super::*;

    /// An unreadable object is a warning that says why and which grant of
    /// manifests/check reads it.
    #[test]
    fn an_unreadable_object_names_the_grant_that_reads_it() {
        let c = unreadable(
            "service-endpoints",
            "Service ns/x has ready endpoints",
            "its Endpoints",
            "forbidden",
            "endpoints",
        );
        assert_eq!(c.result, super::super::report::Status::Warning);
        assert_eq!(c.detail, "cannot read its Endpoints: forbidden");
        assert_eq!(
            c.hint.as_deref(),
            Some("run check with the permissions of manifests/check (get on endpoints)")
        );
    }

    const APPLIED: &str = r#"{
      "apiVersion": "v1", "kind": "Secret",
      "metadata": {"name": "gcs-secret", "namespace": "team-a",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
          "{\"data\":{\"gcs-key.json\":\"c2VjcmV0LXZhbHVl\"}}"}},
      "type": "Opaque",
      "data": {"gcs-key.json": "c2VjcmV0LXZhbHVl", "other": "b3RoZXItdmFsdWU="},
      "stringData": {"plain": "plain-value"}
    }"#;

    #[test]
    fn a_store_secret_keeps_its_key_names_and_no_value() {
        let s: SecretKeys = serde_json::from_str(APPLIED).expect("parses");
        assert_eq!(
            s.keys.iter().map(String::as_str).collect::<Vec<_>>(),
            ["gcs-key.json", "other", "plain"]
        );
        assert_eq!(s.metadata.name.as_deref(), Some("gcs-secret"));
        // Nothing of the values survives anywhere in the value, annotations included.
        let kept = format!("{s:?}");
        for value in ["c2VjcmV0", "secret-value", "plain-value", "b3RoZXI"] {
            assert!(!kept.contains(value), "{value} kept in {kept}");
        }
        let empty: SecretKeys =
            serde_json::from_str(r#"{"metadata": {"name": "e"}, "data": null}"#).expect("null");
        assert!(empty.keys.is_empty());
    }

    #[test]
    fn the_serving_secret_keeps_the_certificates_and_never_the_key() {
        let body = serde_json::json!({
            "metadata": {"name": "persistence-webhook-tls",
                         "annotations": {"last-applied": "PRIVATE-KEY-TEXT"}},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64::engine::general_purpose::STANDARD.encode("CERT-PEM"),
                "tls.key": base64::engine::general_purpose::STANDARD.encode("PRIVATE-KEY-TEXT"),
                "ca.crt": base64::engine::general_purpose::STANDARD.encode("CA-PEM")
            }
        });
        let s: ServingSecret = serde_json::from_value(body).expect("parses");
        assert_eq!(s.tls_crt.as_deref(), Some(&b"CERT-PEM"[..]));
        assert_eq!(s.ca_crt.as_deref(), Some(&b"CA-PEM"[..]));
        assert_eq!(
            s.keys.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ca.crt", "tls.crt", "tls.key"]
        );
        let kept = format!("{s:?}");
        assert!(!kept.contains("PRIVATE"), "{kept}");
        assert!(!kept.contains("UFJJVkFURS"), "{kept}");
    }
}
