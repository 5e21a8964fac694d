//! SPEC §7: the SDK variables of each provider's default store among the
//! selected ones, and for GCS the key file they point to.

use super::*;

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
/// GCS the key file they point to. A variable is set only when its field
/// is given; a keyless store gets no credential.
pub(super) fn sdk_env(
    store: &Store,
    namer: &mut VolumeNamer<'_, '_>,
    volumes: &mut Vec<WantVolume>,
    mounts: &mut Vec<WantMount>,
    env: &mut Vec<WantEnv>,
) {
    let Backend::Cloud {
        provider,
        bucket,
        credentials,
        endpoint,
        region,
    } = store.backend()
    else {
        return;
    };
    // The SDK keys, with the Secret that holds them (none on a keyless store).
    let sdk = credentials.as_ref().map(|c| (c.secret.as_str(), &c.sdk));
    let secret_ref = |secret: &str, key: &str| EnvValue::Secret {
        secret: secret.to_owned(),
        key: key.to_owned(),
    };
    match provider {
        Provider::Gcs => {
            if let Some(c) = credentials {
                let what = "the GCS credentials".to_owned();
                let volume = k8s::volume(
                    GCS_CREDENTIALS_VOLUME,
                    k8s::VolumeSource::SecretKey {
                        secret: &c.secret,
                        key: &c.secret_key,
                    },
                );
                let (name, json) = namer.name(GCS_CREDENTIALS_VOLUME, &volume);
                mounts.push(want_mount(
                    what.clone(),
                    &name,
                    GCS_CREDENTIALS_DIR,
                    None,
                    true,
                ));
                volumes.push(WantVolume { name, json });
                env.push(want_env(
                    ENV_GOOGLE_CREDENTIALS,
                    EnvValue::Plain(format!("{GCS_CREDENTIALS_DIR}/{}", c.secret_key)),
                ));
            }
            if let Some(endpoint) = endpoint {
                env.push(want_env(
                    ENV_STORAGE_EMULATOR_HOST,
                    EnvValue::Plain(endpoint.clone()),
                ));
            }
        }
        Provider::S3 => {
            if let Some((
                secret,
                SdkKeys::S3 {
                    access_key_id,
                    secret_access_key,
                    session_token,
                },
            )) = sdk
            {
                env.push(want_env(
                    ENV_AWS_ACCESS_KEY_ID,
                    secret_ref(secret, access_key_id),
                ));
                env.push(want_env(
                    ENV_AWS_SECRET_ACCESS_KEY,
                    secret_ref(secret, secret_access_key),
                ));
                if let Some(token) = session_token {
                    env.push(want_env(ENV_AWS_SESSION_TOKEN, secret_ref(secret, token)));
                }
            }
            if let Some(endpoint) = endpoint {
                env.push(want_env(
                    ENV_AWS_ENDPOINT_URL_S3,
                    EnvValue::Plain(endpoint.clone()),
                ));
            }
            if let Some(region) = region {
                env.push(want_env(ENV_AWS_REGION, EnvValue::Plain(region.clone())));
                env.push(want_env(
                    ENV_AWS_DEFAULT_REGION,
                    EnvValue::Plain(region.clone()),
                ));
            }
        }
        Provider::Azure => {
            if let Some(account) = Provider::azure_account(bucket) {
                env.push(want_env(
                    ENV_AZURE_STORAGE_ACCOUNT_NAME,
                    EnvValue::Plain(account.to_owned()),
                ));
            }
            match sdk {
                Some((secret, SdkKeys::AzureConnectionString(key))) => env.push(want_env(
                    ENV_AZURE_STORAGE_CONNECTION_STRING,
                    secret_ref(secret, key),
                )),
                Some((secret, SdkKeys::AzureAccountKey(key))) => env.push(want_env(
                    ENV_AZURE_STORAGE_ACCOUNT_KEY,
                    secret_ref(secret, key),
                )),
                _ => {}
            }
        }
    }
}
