//! A store's credentials: `secret` and `secretKey` (both or neither), and
//! the SDK key fields, each on the provider that reads it.

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::{Credentials, Provider, SdkKeys};
use crate::names;
use crate::text::clip;
use crate::vocabulary::RESERVED_ENV;

impl Validator {
    /// `secret` and `secretKey` (both or neither: neither is a keyless
    /// store), and the SDK key fields, which need `secret`.
    pub(super) fn credentials(
        &mut self,
        at: &str,
        name: &str,
        kind: &str,
        provider: Option<Provider>,
        raw: &RawStore,
    ) -> Option<Credentials> {
        let secret = self.non_empty(at, "secret", &raw.secret);
        let secret_key = self.non_empty(at, "secretKey", &raw.secret_key);
        let sdk_ok = self.sdk_fields(at, kind, provider, raw);
        let (secret, secret_key) = self.secret_pair(at, name, secret, secret_key, raw)?;
        Some(Credentials {
            secret: secret.to_owned(),
            secret_key: secret_key.to_owned(),
            sdk: sdk_keys(sdk_ok, raw),
        })
    }

    /// The SDK key fields: each on the provider that reads it, a Secret key
    /// of a store that has a Secret, the access key's two halves together,
    /// one Azure credential. Whether they are all usable.
    fn sdk_fields(
        &mut self,
        at: &str,
        kind: &str,
        provider: Option<Provider>,
        raw: &RawStore,
    ) -> bool {
        let sdk_fields = [
            ("accessKeyIdKey", &raw.access_key_id_key, Provider::S3),
            (
                "secretAccessKeyKey",
                &raw.secret_access_key_key,
                Provider::S3,
            ),
            ("sessionTokenKey", &raw.session_token_key, Provider::S3),
            (
                "connectionStringKey",
                &raw.connection_string_key,
                Provider::Azure,
            ),
            ("accountKeyKey", &raw.account_key_key, Provider::Azure),
        ];
        let mut sdk_ok = true;
        for (field, value, only) in sdk_fields {
            let Some(key) = value else { continue };
            let at_field = format!("{at}.{field}");
            if provider.is_some_and(|p| p != only) {
                self.problem(
                    at_field,
                    format!(
                        "not allowed on store {kind} (only {} takes it)",
                        only.as_str()
                    ),
                );
                sdk_ok = false;
            } else if !names::is_secret_key(key) {
                self.problem(
                    at_field,
                    format!(
                        "{:?} is not a Secret key (letters, digits, '-', '_' and '.', at most 253)",
                        clip(key)
                    ),
                );
                sdk_ok = false;
            } else if raw.secret.is_none() {
                self.problem(at_field, "names a key of the store's Secret, but the store has no secret; add secret and secretKey, or remove the field");
                sdk_ok = false;
            }
        }
        match (
            &raw.access_key_id_key,
            &raw.secret_access_key_key,
            &raw.session_token_key,
        ) {
            (Some(_), None, _) => {
                self.problem(format!("{at}.secretAccessKeyKey"), "missing: accessKeyIdKey and secretAccessKeyKey are the two halves of one access key; give both or neither");
                sdk_ok = false;
            }
            (None, Some(_), _) => {
                self.problem(format!("{at}.accessKeyIdKey"), "missing: accessKeyIdKey and secretAccessKeyKey are the two halves of one access key; give both or neither");
                sdk_ok = false;
            }
            (None, None, Some(_)) => {
                self.problem(format!("{at}.sessionTokenKey"), "a session token is only used with an access key: add accessKeyIdKey and secretAccessKeyKey, or remove sessionTokenKey");
                sdk_ok = false;
            }
            _ => {}
        }
        if raw.connection_string_key.is_some() && raw.account_key_key.is_some() {
            self.problem(format!("{at}.accountKeyKey"), "connectionStringKey and accountKeyKey are two ways to give one credential; keep one");
            sdk_ok = false;
        }
        sdk_ok
    }

    /// `secret` and `secretKey`, both or neither (`None`: neither, or a
    /// problem reported), each checked, and the key not used with another
    /// Secret by another store.
    fn secret_pair<'r>(
        &mut self,
        at: &str,
        name: &str,
        secret: Option<&'r str>,
        secret_key: Option<&'r str>,
        raw: &RawStore,
    ) -> Option<(&'r str, &'r str)> {
        let (secret, secret_key) = match (secret, secret_key) {
            (None, None) => {
                return None;
            }
            (Some(_), None) if raw.secret_key.is_none() => {
                self.problem(at, "has secret but no secretKey: give both (the Secret and its key holding the polystores credential), or neither for a keyless store that uses the pod's workload identity");
                return None;
            }
            (None, Some(_)) if raw.secret.is_none() => {
                self.problem(at, "has secretKey but no secret: give both (the Secret and its key holding the polystores credential), or neither for a keyless store that uses the pod's workload identity");
                return None;
            }
            (Some(secret), Some(key)) => (secret, key),
            // An empty one was reported by non_empty.
            _ => return None,
        };
        if !names::is_dns1123_subdomain(secret) {
            self.problem(
                format!("{at}.secret"),
                format!("{secret:?} is not a valid Secret name (a DNS-1123 subdomain)"),
            );
        }
        if !names::is_env_name(secret_key) {
            self.problem(format!("{at}.secretKey"), format!("{secret_key:?} cannot name an env var (letters, digits, '_', '-' and '.', not starting with a digit)"));
        }
        if RESERVED_ENV.contains(&secret_key) {
            self.problem(
                format!("{at}.secretKey"),
                format!(
                    "{secret_key:?} is an env var the webhook sets itself; use another key name"
                ),
            );
        }
        match self.secret_keys.get(secret_key) {
            Some((other_secret, other_store)) if other_secret != secret => {
                self.problem(format!("{at}.secretKey"), format!("{secret_key:?} is already used with secret {other_secret:?} by store {other_store:?}; the credential env var is named after the key, so one key name cannot point at two secrets"));
            }
            Some(_) => {}
            None => {
                self.secret_keys
                    .insert(secret_key.to_owned(), (secret.to_owned(), name.to_owned()));
            }
        }
        Some((secret, secret_key))
    }
}

/// The SDK keys a store's credential gives its pods.
fn sdk_keys(sdk_ok: bool, raw: &RawStore) -> SdkKeys {
    // The pair wins over the Azure keys only when both were given on the
    // right kind, which sdk_ok says: a misuse above leaves no SDK keys.
    match (
        sdk_ok,
        &raw.access_key_id_key,
        &raw.secret_access_key_key,
        &raw.connection_string_key,
        &raw.account_key_key,
    ) {
        (true, Some(id), Some(secret_access), _, _) => SdkKeys::S3 {
            access_key_id: id.clone(),
            secret_access_key: secret_access.clone(),
            session_token: raw.session_token_key.clone(),
        },
        (true, _, _, Some(key), _) => SdkKeys::AzureConnectionString(key.clone()),
        (true, _, _, _, Some(key)) => SdkKeys::AzureAccountKey(key.clone()),
        _ => SdkKeys::None,
    }
}
