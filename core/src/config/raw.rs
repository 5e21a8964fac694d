//! The config file as written: the raw serde model of one store, before any
//! rule is checked. Every field is optional so that a missing one is
//! reported by name, with the others, instead of failing the parse; unknown
//! fields are refused so that a typo is not silently ignored.

use serde::Deserialize;

/// One store as written in the file. Every field optional so that a missing
/// one is reported by name, with the others, instead of failing the parse.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawStore {
    pub(super) mount_path: Option<String>,
    pub(super) host_path: Option<String>,
    pub(super) existing_claim: Option<String>,
    pub(super) read_only: Option<bool>,
    pub(super) store: Option<String>,
    pub(super) bucket: Option<String>,
    pub(super) secret: Option<String>,
    pub(super) secret_key: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) access_key_id_key: Option<String>,
    pub(super) secret_access_key_key: Option<String>,
    pub(super) session_token_key: Option<String>,
    pub(super) connection_string_key: Option<String>,
    pub(super) account_key_key: Option<String>,
    pub(super) namespaces: Option<Vec<String>>,
    pub(super) isolate_namespaces: Option<bool>,
}
