//! A mounted store's volume: what Kubernetes volume source it names, where
//! it is mounted, and the names it takes.

use serde_json::Value;

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::{Backend, Role, Source};
use crate::names;

impl Validator {
    pub(super) fn volume(
        &mut self,
        role: Role,
        at: &str,
        name: &str,
        raw: &RawStore,
    ) -> Option<Backend> {
        let before = self.problems.len();
        for (field, present) in [
            ("bucket", raw.bucket.is_some()),
            ("secret", raw.secret.is_some()),
            ("secretKey", raw.secret_key.is_some()),
            ("endpoint", raw.endpoint.is_some()),
            ("region", raw.region.is_some()),
            ("accessKeyIdKey", raw.access_key_id_key.is_some()),
            ("secretAccessKeyKey", raw.secret_access_key_key.is_some()),
            ("sessionTokenKey", raw.session_token_key.is_some()),
            ("connectionStringKey", raw.connection_string_key.is_some()),
            ("accountKeyKey", raw.account_key_key.is_some()),
        ] {
            if present {
                self.problem(format!("{at}.{field}"), format!("only allowed on a cloud store; add store: gcs, s3 or azure, or remove {field}"));
            }
        }
        let mount_path = match raw.mount_path.as_deref() {
            None => {
                self.problem(at, "missing mountPath (a volume store needs mountPath, a cloud store needs store and bucket)");
                None
            }
            Some(p) => match names::normalise_mount_path(p) {
                Ok(p) => Some(p),
                Err(why) => {
                    self.problem(format!("{at}.mountPath"), format!("{p:?} {why}"));
                    None
                }
            },
        };
        let source = match (&raw.host_path, &raw.existing_claim) {
            (Some(_), Some(_)) => {
                self.problem(
                    at,
                    "hostPath and existingClaim are mutually exclusive; keep one",
                );
                None
            }
            (Some(host), None) => {
                if !host.starts_with('/') || host.chars().any(char::is_control) {
                    self.problem(
                        format!("{at}.hostPath"),
                        format!("{host:?} must be an absolute path on the node"),
                    );
                }
                Some(Source::HostPath(host.clone()))
            }
            (None, Some(claim)) => {
                if !names::is_dns1123_subdomain(claim) {
                    self.problem(format!("{at}.existingClaim"), format!("{claim:?} is not a valid PersistentVolumeClaim name (a DNS-1123 subdomain)"));
                }
                Some(Source::Claim(claim.clone()))
            }
            (None, None) => Some(Source::EmptyDir),
        };
        let read_only = raw.read_only.unwrap_or(false);
        if role == Role::Outputs && read_only {
            self.problem(
                format!("{at}.readOnly"),
                "an outputs store is written by the run and cannot be read-only",
            );
        }
        if let Some(path) = &mount_path {
            if let Some(other) = self.mount_paths.insert(path.clone(), name.to_owned()) {
                self.problem(
                    format!("{at}.mountPath"),
                    format!("{path:?} is already the mount path of store {other:?}"),
                );
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Backend::Volume {
            mount_path: mount_path?,
            source: source?,
            read_only,
            volume: Value::Null,
        })
    }
}
