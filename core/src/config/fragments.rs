//! A store's parts of every patch that selects it, serialised once when the
//! config loads: a review copies these bytes and writes only what depends
//! on the pod (pointers, indices, the outputs path, a renamed volume).
//!
//! The bytes are those a serialised `serde_json::Value` of the same object
//! gives (keys sorted, no spaces), so the patch on the wire is the same as
//! when it was built from values; `k8s`'s tests hold the writers to the
//! typed builders.

use serde_json::Value;

use super::{Backend, Credentials, Provider, Role, SdkKeys};
use crate::k8s;
use crate::vocabulary::{
    ENV_AWS_ACCESS_KEY_ID, ENV_AWS_DEFAULT_REGION, ENV_AWS_ENDPOINT_URL_S3, ENV_AWS_REGION,
    ENV_AWS_SECRET_ACCESS_KEY, ENV_AWS_SESSION_TOKEN, ENV_AZURE_STORAGE_ACCOUNT_KEY,
    ENV_AZURE_STORAGE_ACCOUNT_NAME, ENV_AZURE_STORAGE_CONNECTION_STRING, ENV_GOOGLE_CREDENTIALS,
    ENV_STORAGE_EMULATOR_HOST, GCS_CREDENTIALS_DIR, GCS_CREDENTIALS_VOLUME,
};

/// What one store adds to a patch, as JSON written once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fragments {
    /// A volume store's pod volume (under its preferred name); empty for a
    /// bucket store.
    pub volume: Box<[u8]>,
    /// A data volume store's mount, at its mount path; empty otherwise
    /// (an outputs store's mount carries the run's sub-path).
    pub mount: Box<[u8]>,
    /// A keyed bucket store's polystores key variable (named after its
    /// `secretKey`, read from its Secret); empty otherwise.
    pub key_env: Box<[u8]>,
    /// A keyed GCS store's key file: the volume (as a value, for renaming
    /// and comparing, and as JSON) and its mount.
    pub gcs_key: Option<GcsKey>,
    /// The SDK variables (SPEC §7) the store gives when it is its
    /// provider's default store among the selected ones, in order.
    pub sdk_env: Vec<EnvFragment>,
}

/// A keyed GCS store's key file volume and mount.
#[derive(Debug, Clone, PartialEq)]
pub struct GcsKey {
    /// The Secret volume, named [`GCS_CREDENTIALS_VOLUME`].
    pub volume: Value,
    /// `volume` as JSON.
    pub volume_json: Box<[u8]>,
    /// Its read-only mount at [`GCS_CREDENTIALS_DIR`], as JSON.
    pub mount_json: Box<[u8]>,
}

/// One env var a store gives, with its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvFragment {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: EnvSource,
    /// `{"name":..,"value":..}` or `{"name":..,"valueFrom":..}`.
    pub json: Box<[u8]>,
}

/// Where an env var's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// A literal value.
    Plain(String),
    /// A key of a Secret.
    Secret {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
}

impl EnvFragment {
    fn new(name: &'static str, value: EnvSource) -> EnvFragment {
        let mut json = Vec::new();
        match &value {
            EnvSource::Plain(v) => k8s::write_env_value(&mut json, name, v),
            EnvSource::Secret { secret, key } => {
                k8s::write_env_secret(&mut json, name, secret, key)
            }
        }
        EnvFragment {
            name,
            value,
            json: json.into(),
        }
    }
}

impl Fragments {
    /// The fragments of a store of `role` backed by `backend`.
    pub(super) fn of(role: Role, backend: &Backend) -> Fragments {
        match backend {
            Backend::Volume {
                mount_path,
                read_only,
                volume,
                ..
            } => {
                let name = volume["name"].as_str().unwrap_or_default();
                let mut mount = Vec::new();
                if role == Role::Data {
                    k8s::write_volume_mount(&mut mount, name, mount_path, None, *read_only);
                }
                Fragments {
                    volume: serde_json::to_vec(volume)
                        .expect("a JSON value always serialises")
                        .into(),
                    mount: mount.into(),
                    ..Fragments::default()
                }
            }
            Backend::Cloud {
                provider,
                bucket,
                credentials,
                endpoint,
                region,
            } => {
                let mut key_env = Vec::new();
                if let Some(c) = credentials {
                    k8s::write_env_secret(&mut key_env, &c.secret_key, &c.secret, &c.secret_key);
                }
                let (gcs_key, sdk_env) = sdk(
                    *provider,
                    bucket,
                    credentials.as_ref(),
                    endpoint.as_deref(),
                    region.as_deref(),
                );
                Fragments {
                    key_env: key_env.into(),
                    gcs_key,
                    sdk_env,
                    ..Fragments::default()
                }
            }
        }
    }
}

/// The SDK variables of a bucket store (SPEC §7), and for a keyed GCS
/// store the key file they point to. A variable is set only when its field
/// is given; a keyless store gets no credential.
fn sdk(
    provider: Provider,
    bucket: &str,
    credentials: Option<&Credentials>,
    endpoint: Option<&str>,
    region: Option<&str>,
) -> (Option<GcsKey>, Vec<EnvFragment>) {
    let mut env = Vec::new();
    let mut gcs_key = None;
    let plain = |v: &str| EnvSource::Plain(v.to_owned());
    let secret_ref = |c: &Credentials, key: &str| EnvSource::Secret {
        secret: c.secret.clone(),
        key: key.to_owned(),
    };
    match provider {
        Provider::Gcs => {
            if let Some(c) = credentials {
                let volume = k8s::volume(
                    GCS_CREDENTIALS_VOLUME,
                    k8s::VolumeSource::SecretKey {
                        secret: &c.secret,
                        key: &c.secret_key,
                    },
                );
                let mut mount_json = Vec::new();
                k8s::write_volume_mount(
                    &mut mount_json,
                    GCS_CREDENTIALS_VOLUME,
                    GCS_CREDENTIALS_DIR,
                    None,
                    true,
                );
                gcs_key = Some(GcsKey {
                    volume_json: serde_json::to_vec(&volume)
                        .expect("a JSON value always serialises")
                        .into(),
                    volume,
                    mount_json: mount_json.into(),
                });
                env.push(EnvFragment::new(
                    ENV_GOOGLE_CREDENTIALS,
                    EnvSource::Plain(format!("{GCS_CREDENTIALS_DIR}/{}", c.secret_key)),
                ));
            }
            if let Some(endpoint) = endpoint {
                env.push(EnvFragment::new(ENV_STORAGE_EMULATOR_HOST, plain(endpoint)));
            }
        }
        Provider::S3 => {
            if let Some(
                c @ Credentials {
                    sdk:
                        SdkKeys::S3 {
                            access_key_id,
                            secret_access_key,
                            session_token,
                        },
                    ..
                },
            ) = credentials
            {
                env.push(EnvFragment::new(
                    ENV_AWS_ACCESS_KEY_ID,
                    secret_ref(c, access_key_id),
                ));
                env.push(EnvFragment::new(
                    ENV_AWS_SECRET_ACCESS_KEY,
                    secret_ref(c, secret_access_key),
                ));
                if let Some(token) = session_token {
                    env.push(EnvFragment::new(
                        ENV_AWS_SESSION_TOKEN,
                        secret_ref(c, token),
                    ));
                }
            }
            if let Some(endpoint) = endpoint {
                env.push(EnvFragment::new(ENV_AWS_ENDPOINT_URL_S3, plain(endpoint)));
            }
            if let Some(region) = region {
                env.push(EnvFragment::new(ENV_AWS_REGION, plain(region)));
                env.push(EnvFragment::new(ENV_AWS_DEFAULT_REGION, plain(region)));
            }
        }
        Provider::Azure => {
            if let Some(account) = Provider::azure_account(bucket) {
                env.push(EnvFragment::new(
                    ENV_AZURE_STORAGE_ACCOUNT_NAME,
                    plain(account),
                ));
            }
            match credentials {
                Some(
                    c @ Credentials {
                        sdk: SdkKeys::AzureConnectionString(key),
                        ..
                    },
                ) => env.push(EnvFragment::new(
                    ENV_AZURE_STORAGE_CONNECTION_STRING,
                    secret_ref(c, key),
                )),
                Some(
                    c @ Credentials {
                        sdk: SdkKeys::AzureAccountKey(key),
                        ..
                    },
                ) => env.push(EnvFragment::new(
                    ENV_AZURE_STORAGE_ACCOUNT_KEY,
                    secret_ref(c, key),
                )),
                _ => {}
            }
        }
    }
    (gcs_key, env)
}
