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
/// Annotation the MutatingAdmissionPolicy (`persistence-webhook policy`)
/// writes on a pod the webhook would deny: the webhook's message. The
/// ValidatingAdmissionPolicy refuses a pod that carries it, and the
/// mutating policy removes it from a pod it allows, so no pod is stored
/// with it.
pub const POLICY_DENIED_ANNOTATION: &str = "polyaxon.com/persistence-denied";
/// Label that opts a namespace in ([`OPT_IN`]) or a pod out ([`OPT_OUT`]).
pub const LABEL_INJECTION: &str = "polyaxon.com/persistence-injection";
/// The value of [`LABEL_INJECTION`] that opts a namespace in.
pub const OPT_IN: &str = "enabled";
/// The value of [`LABEL_INJECTION`] that opts a pod out.
pub const OPT_OUT: &str = "disabled";
/// The name of the webhook's entry in the MutatingWebhookConfiguration the
/// manifests and the chart install (`check` and live `explain` look for it).
pub const WEBHOOK_ENTRY: &str = "persistence.polyaxon.com";

/// JSON object `{store: path}` of the run's data stores.
pub const ENV_DATA_PATHS: &str = "POLYAXON_RUN_DATA_PATHS";
/// The run's outputs path.
pub const ENV_OUTPUTS_PATH: &str = "POLYAXON_RUN_OUTPUTS_PATH";
/// JSON object `{path: {store, secret_key}}` polystores reads for buckets.
pub const ENV_ACCESS_KEYS: &str = "POLYSTORES_RUN_STORES_ACCESS_KEYS";
/// Google's default-credentials file variable.
pub const ENV_GOOGLE_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// The GCS clients' API server (an emulator or a GCS-API endpoint).
pub const ENV_STORAGE_EMULATOR_HOST: &str = "STORAGE_EMULATOR_HOST";
/// The AWS SDKs' and s3fs's access key id.
pub const ENV_AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// The AWS SDKs' and s3fs's secret access key.
pub const ENV_AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// The AWS SDKs' session token.
pub const ENV_AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// The S3 endpoint of the AWS SDKs (boto3 1.28+, the service-specific form).
pub const ENV_AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
/// The AWS region (current SDKs).
pub const ENV_AWS_REGION: &str = "AWS_REGION";
/// The AWS region (older SDKs and the CLI).
pub const ENV_AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// The Azure Storage account (adlfs and the Azure SDK samples).
pub const ENV_AZURE_STORAGE_ACCOUNT_NAME: &str = "AZURE_STORAGE_ACCOUNT_NAME";
/// An Azure Storage connection string.
pub const ENV_AZURE_STORAGE_CONNECTION_STRING: &str = "AZURE_STORAGE_CONNECTION_STRING";
/// An Azure Storage account key.
pub const ENV_AZURE_STORAGE_ACCOUNT_KEY: &str = "AZURE_STORAGE_ACCOUNT_KEY";

/// The SDK variables that only make sense together: a container that sets
/// any one of a group keeps its own and gets none of that group from the
/// webhook, so a run never mixes half its own credential (or region) with
/// half a store's.
pub const SDK_ENV_GROUPS: [&[&str]; 6] = [
    &[ENV_GOOGLE_CREDENTIALS],
    &[ENV_STORAGE_EMULATOR_HOST],
    &[
        ENV_AWS_ACCESS_KEY_ID,
        ENV_AWS_SECRET_ACCESS_KEY,
        ENV_AWS_SESSION_TOKEN,
    ],
    &[ENV_AWS_ENDPOINT_URL_S3],
    &[ENV_AWS_REGION, ENV_AWS_DEFAULT_REGION],
    &[
        ENV_AZURE_STORAGE_ACCOUNT_NAME,
        ENV_AZURE_STORAGE_CONNECTION_STRING,
        ENV_AZURE_STORAGE_ACCOUNT_KEY,
    ],
];

/// The group of [`SDK_ENV_GROUPS`] an env var belongs to, if any.
pub fn sdk_env_group(name: &str) -> Option<usize> {
    SDK_ENV_GROUPS.iter().position(|g| g.contains(&name))
}

/// Env var names the webhook owns; a store's `secretKey` must not shadow them.
pub const RESERVED_ENV: [&str; 14] = [
    ENV_DATA_PATHS,
    ENV_OUTPUTS_PATH,
    ENV_ACCESS_KEYS,
    ENV_GOOGLE_CREDENTIALS,
    ENV_STORAGE_EMULATOR_HOST,
    ENV_AWS_ACCESS_KEY_ID,
    ENV_AWS_SECRET_ACCESS_KEY,
    ENV_AWS_SESSION_TOKEN,
    ENV_AWS_ENDPOINT_URL_S3,
    ENV_AWS_REGION,
    ENV_AWS_DEFAULT_REGION,
    ENV_AZURE_STORAGE_ACCOUNT_NAME,
    ENV_AZURE_STORAGE_CONNECTION_STRING,
    ENV_AZURE_STORAGE_ACCOUNT_KEY,
];

/// Prefix of every pod volume the webhook adds.
pub const VOLUME_PREFIX: &str = "pw-";
/// The GCS credentials volume. The double hyphen makes it impossible for a
/// store's volume (`pw-<DNS label>`) to take this name: a label never starts
/// with `-`.
pub const GCS_CREDENTIALS_VOLUME: &str = "pw--gcs-credentials";
/// Where the GCS key file is mounted.
pub const GCS_CREDENTIALS_DIR: &str = "/var/run/secrets/polyaxon.com/gcs";

/// Audit annotation (SPEC §8): the selected data stores, comma-separated.
/// The API server records it as `<webhook name>/data`.
pub const AUDIT_DATA: &str = "data";
/// Audit annotation: the selected outputs store.
pub const AUDIT_OUTPUTS: &str = "outputs";
/// Audit annotation: the run's outputs path.
pub const AUDIT_OUTPUTS_PATH: &str = "outputs-path";
