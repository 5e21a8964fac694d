//! The installed persistence config, for live `explain --pod NS/NAME`
//! without `--config`: the ConfigMap the webhook's Deployment mounts. The
//! Deployment's `serve` container, its `--config`, the mount and the
//! ConfigMap key are found by `check`'s own [`locate`], and the config is
//! read by its [`parse`] (the validator `serve` runs); this room only makes
//! the two reads and words what went wrong: which object, which verb, and
//! the grant that allows it.

use anyhow::{anyhow, Result};
use kube::api::Api;

use super::ConfigSource;
use crate::cluster::check::config_map::{locate, parse};
use crate::cluster::check::objects::{ConfigMap, Deployment};
use crate::cluster::check::ServeParser;
use crate::config::Config;

/// What a user without the reads can do instead, or what grants them.
fn grant(namespace: &str) -> String {
    format!(
        "explain without --config needs get on deployments and configmaps in namespace {namespace}, which the ClusterRole of manifests/check grants; or pass --config FILE"
    )
}

/// An API error on `kind namespace/name` (read with `get`), with the
/// grant that allows it on a 403.
fn api_error(
    e: kube::Error,
    kind: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> anyhow::Error {
    match e {
        kube::Error::Api(r) if r.code == 403 => anyhow!(
            "forbidden to get {resource} {namespace}/{name} (the {kind} that holds the installed config): {}; {}",
            r.message,
            grant(namespace)
        ),
        kube::Error::Api(r) => anyhow!(
            "reading {kind} {namespace}/{name} (for the installed config): {} ({})",
            r.message,
            r.reason
        ),
        other => anyhow!(
            "cannot reach the API server to read {kind} {namespace}/{name}: {:#}",
            anyhow::Error::from(other)
        ),
    }
}

/// Reads the config the webhook's Deployment `namespace/name` mounts
/// (its `serve` args read by `serve_parser`).
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    serve_parser: ServeParser,
) -> Result<(Config, ConfigSource)> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| api_error(e, "Deployment", "deployments", namespace, name))?
        .ok_or_else(|| {
            anyhow!(
                "Deployment {namespace}/{name} not found: explain reads the installed config from the ConfigMap it mounts; name your install with --webhook-namespace and --webhook-name, or pass --config FILE"
            )
        })?;
    let source = locate(&deployment, serve_parser).map_err(|e| {
        anyhow!(
            "Deployment {namespace}/{name} does not say where its config is: {e}; pass --config FILE"
        )
    })?;
    let cm = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(&source.config_map)
        .await
        .map_err(|e| api_error(e, "ConfigMap", "configmaps", namespace, &source.config_map))?
        .ok_or_else(|| {
            anyhow!(
                "ConfigMap {namespace}/{}, which Deployment {namespace}/{name} mounts for its --config {}, not found: the webhook's pods cannot start; pass --config FILE to explain against a file",
                source.config_map,
                source.path
            )
        })?;
    let config = parse(&cm, &source.key).map_err(|e| {
        anyhow!(
            "the installed config, ConfigMap {namespace}/{}, does not validate: {e} (the webhook keeps serving its last good config); pass --config FILE to explain against another",
            source.config_map
        )
    })?;
    Ok((
        config,
        ConfigSource::Installed {
            deployment: format!("{namespace}/{name}"),
            config_map: format!("{namespace}/{}", source.config_map),
            key: source.key,
        },
    ))
}
