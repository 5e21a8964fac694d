//! Every name the SPEC fixes (SPEC.md §3, §4): the env vars the webhook
//! sets, the annotations it reads and writes, the opt-out label, the names of
//! the volumes it adds and where the GCS key is mounted.
//!
//! These are the contract with Polyaxon, polystores and the operators'
//! manifests, so they live in one place that imports nothing: every other
//! module (and the tests' model of the SPEC) takes them from here, which
//! also keeps the modules that use them free of import cycles.

/// Annotation holding the run's `environment.persistence` selection.
pub const ANNOTATION_PERSISTENCE: &str = "polyaxon.com/persistence";
/// Annotation with an explicit outputs sub-path.
pub const ANNOTATION_OUTPUTS_SUBPATH: &str = "polyaxon.com/outputs-subpath";
/// Annotation with Polyaxon's dotted run name.
pub const ANNOTATION_UNIQUE_NAME: &str = "polyaxon.com/unique-name";
/// Annotation the webhook writes, recording what it injected.
pub const ANNOTATION_INJECTED: &str = "polyaxon.com/persistence-injected";
/// Label that opts a namespace in (`enabled`) or a pod out (`disabled`).
pub const LABEL_INJECTION: &str = "polyaxon.com/persistence-injection";

/// JSON object `{store: path}` of the run's data stores.
pub const ENV_DATA_PATHS: &str = "POLYAXON_RUN_DATA_PATHS";
/// The run's outputs path.
pub const ENV_OUTPUTS_PATH: &str = "POLYAXON_RUN_OUTPUTS_PATH";
/// JSON object `{path: {store, secret_key}}` polystores reads for buckets.
pub const ENV_ACCESS_KEYS: &str = "POLYSTORES_RUN_STORES_ACCESS_KEYS";
/// Google's default-credentials file variable.
pub const ENV_GOOGLE_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Env var names the webhook owns; a store's `secretKey` must not shadow them.
pub const RESERVED_ENV: [&str; 4] = [
    ENV_DATA_PATHS,
    ENV_OUTPUTS_PATH,
    ENV_ACCESS_KEYS,
    ENV_GOOGLE_CREDENTIALS,
];

/// Prefix of every pod volume the webhook adds.
pub const VOLUME_PREFIX: &str = "pw-";
/// The GCS credentials volume. The double hyphen makes it impossible for a
/// store's volume (`pw-<DNS label>`) to take this name: a label never starts
/// with `-`.
pub const GCS_CREDENTIALS_VOLUME: &str = "pw--gcs-credentials";
/// Where the GCS key file is mounted.
pub const GCS_CREDENTIALS_DIR: &str = "/var/run/secrets/polyaxon.com/gcs";
