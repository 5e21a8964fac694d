//! The persistence config in its ConfigMap: where the webhook's Deployment
//! reads it ([`locate`]: the `serve` container's `--config`, the mount
//! that holds that path, the ConfigMap volume behind it and its key), the
//! config out of the ConfigMap ([`parse`], through [`Config::from_yaml`]:
//! the very validator `serve` runs at start-up and at every reload), and
//! the verdict of the "config" group ([`judge`]). Live `explain` reads the
//! installed config with the same two functions. Pure.

use std::path::{Component, Path, PathBuf};

use super::objects::{ConfigMap, Deployment, KeyToPath, Lookup, Volume};
use super::report::Check;
use super::workload::{literal_env, serve_container, ServeParser};
use crate::config::{Config, ConfigError, Role};

/// Where the webhook's Deployment reads its persistence config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The ConfigMap (in the Deployment's namespace).
    pub config_map: String,
    /// Its key holding the config.
    pub key: String,
    /// The `serve` container's `--config` path.
    pub path: String,
}

/// Why the Deployment does not say which ConfigMap holds its config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unlocated {
    /// No container's args start with `serve`.
    #[error("no container of the Deployment runs `serve` (args starting with serve)")]
    NoServe,
    /// The `serve` args do not parse.
    #[error("the args of container {container} do not parse as serve's: {reason}")]
    Args {
        /// The container.
        container: String,
        /// The parser's message.
        reason: String,
    },
    /// `serve --demo` with no `--config`: the built-in example config.
    #[error("container {container} runs serve --demo, with the built-in example config and no ConfigMap")]
    Demo {
        /// The container.
        container: String,
    },
    /// Neither `--config` nor `PERSISTENCE_WEBHOOK_CONFIG` (a literal value).
    #[error(
        "container {container} gives serve no --config (nor a PERSISTENCE_WEBHOOK_CONFIG value)"
    )]
    NoConfigFlag {
        /// The container.
        container: String,
    },
    /// No volume mount holds the path.
    #[error("container {container} mounts nothing at {path}, its --config")]
    NotMounted {
        /// The container.
        container: String,
        /// The `--config` path.
        path: String,
    },
    /// The mount names a volume the pod template lacks.
    #[error(
        "container {container} mounts volume {volume}, which the pod template does not define"
    )]
    NoVolume {
        /// The container.
        container: String,
        /// The volume.
        volume: String,
    },
    /// The volume is not a ConfigMap (nor a projected volume of one).
    #[error("volume {volume}, which holds {path}, is not a ConfigMap volume")]
    NotAConfigMap {
        /// The volume.
        volume: String,
        /// The `--config` path.
        path: String,
    },
    /// A ConfigMap volume that does not project the file.
    #[error(
        "volume {volume} (ConfigMap {config_map}) has no file {file}: its items do not list it"
    )]
    NotProjected {
        /// The volume.
        volume: String,
        /// The ConfigMap.
        config_map: String,
        /// The path inside the volume.
        file: String,
    },
    /// A projected volume with several ConfigMaps that could hold the file.
    #[error("projected volume {volume} has the file {file} from one of the ConfigMaps {}", .config_maps.join(", "))]
    Ambiguous {
        /// The volume.
        volume: String,
        /// The path inside the volume.
        file: String,
        /// The candidates.
        config_maps: Vec<String>,
    },
}

/// The ConfigMap and key the Deployment's `serve` container reads its
/// config from: its `--config` path (read by `serve_parser`, `serve`'s own
/// parser), the
/// deepest volume mount holding that path (with its `subPath`), and the
/// ConfigMap volume (or projected ConfigMap source) behind it, through its
/// `items` when it lists them.
pub fn locate(deployment: &Deployment, serve_parser: ServeParser) -> Result<Source, Unlocated> {
    let (container, args) = serve_container(deployment).ok_or(Unlocated::NoServe)?;
    let name = || container.name.clone();
    let serve = serve_parser(args, &literal_env(container)).map_err(|reason| Unlocated::Args {
        container: name(),
        reason,
    })?;
    // The container's own args and env (never this process's) give the path.
    let path: PathBuf = match serve.config {
        Some(path) => path,
        None if serve.demo => return Err(Unlocated::Demo { container: name() }),
        None => return Err(Unlocated::NoConfigFlag { container: name() }),
    };
    let path_text = path.display().to_string();
    let not_mounted = || Unlocated::NotMounted {
        container: name(),
        path: path_text.clone(),
    };
    let file = normal(&path).ok_or_else(not_mounted)?;
    // The deepest mount that holds the file, and the file's path inside
    // the volume (the mount's subPath first).
    let (mount, inside) = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let at = normal(Path::new(&m.mount_path))?;
            let rest = file.strip_prefix(at.as_slice())?;
            let mut inside = m.sub_path.clone().unwrap_or_default();
            for part in rest {
                if !inside.is_empty() {
                    inside.push('/');
                }
                inside.push_str(part);
            }
            Some((at.len(), m, inside))
        })
        .filter(|(_, _, inside)| !inside.is_empty())
        .max_by_key(|(depth, _, _)| *depth)
        .map(|(_, m, inside)| (m, inside))
        .ok_or_else(not_mounted)?;
    let volume: &Volume = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == mount.name))
        .ok_or_else(|| Unlocated::NoVolume {
            container: name(),
            volume: mount.name.clone(),
        })?;
    let found = |config_map: String, key: String| Source {
        config_map,
        key,
        path: path_text.clone(),
    };
    // A ConfigMap's key as the volume shows it: through `items` when
    // listed, else the file of that name at the volume's top.
    let key_in = |items: Option<&Vec<KeyToPath>>| match items {
        Some(items) => items
            .iter()
            .find(|i| {
                // A relative path (the API server refuses `..`).
                let parts: Vec<&str> = i
                    .path
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .collect();
                parts.join("/") == inside
            })
            .map(|i| i.key.clone()),
        None => (!inside.contains('/')).then(|| inside.clone()),
    };
    if let Some(cm) = &volume.config_map {
        return key_in(cm.items.as_ref())
            .map(|key| found(cm.name.clone(), key))
            .ok_or_else(|| Unlocated::NotProjected {
                volume: volume.name.clone(),
                config_map: cm.name.clone(),
                file: inside.clone(),
            });
    }
    if let Some(projected) = &volume.projected {
        let sources: Vec<_> = projected
            .sources
            .iter()
            .flatten()
            .filter_map(|s| s.config_map.as_ref())
            .collect();
        // A source listing the file in its items is certain; one without
        // items may hold it.
        if let Some((cm, key)) = sources.iter().find_map(|cm| {
            cm.items
                .as_ref()
                .and_then(|_| key_in(cm.items.as_ref()))
                .map(|k| (cm, k))
        }) {
            return Ok(found(cm.name.clone(), key));
        }
        let maybe: Vec<_> = sources
            .iter()
            .filter(|cm| cm.items.is_none() && !inside.contains('/'))
            .collect();
        return match maybe.as_slice() {
            [cm] => Ok(found(cm.name.clone(), inside.clone())),
            [] => Err(Unlocated::NotAConfigMap {
                volume: volume.name.clone(),
                path: path_text.clone(),
            }),
            many => Err(Unlocated::Ambiguous {
                volume: volume.name.clone(),
                file: inside.clone(),
                config_maps: many.iter().map(|cm| cm.name.clone()).collect(),
            }),
        };
    }
    Err(Unlocated::NotAConfigMap {
        volume: volume.name.clone(),
        path: path_text,
    })
}

/// An absolute path's parts, `.` dropped; `None` for a relative path or
/// one with `..`.
fn normal(path: &Path) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut absolute = false;
    for c in path.components() {
        match c {
            Component::RootDir => absolute = true,
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    absolute.then_some(parts)
}

/// Why a ConfigMap gives no config.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// The key is absent.
    #[error("it has no key {key} (keys: {})", .keys.join(", "))]
    NoKey {
        /// The key looked for.
        key: String,
        /// The keys it has.
        keys: Vec<String>,
    },
    /// The key's text does not validate.
    #[error("{key}: {source}")]
    Invalid {
        /// The key.
        key: String,
        /// What the validator says.
        #[source]
        source: ConfigError,
    },
}

/// The config in the ConfigMap's `key`, validated as `serve` validates it.
pub fn parse(cm: &ConfigMap, key: &str) -> Result<Config, Unusable> {
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(key)) else {
        return Err(Unusable::NoKey {
            key: key.to_owned(),
            keys: cm.data.iter().flatten().map(|(k, _)| k.clone()).collect(),
        });
    };
    Config::from_yaml(text).map_err(|source| Unusable::Invalid {
        key: key.to_owned(),
        source,
    })
}

/// Judges the ConfigMap's `key`; the config is returned when it validates.
pub fn judge(
    found: &Lookup<ConfigMap>,
    namespace: &str,
    name: &str,
    key: &str,
) -> (Check, Option<Config>) {
    let title = format!("config in ConfigMap {namespace}/{name} validates");
    let cm = match found {
        Lookup::Found(cm) => cm,
        Lookup::Missing => {
            return (
                Check::fail(
                    "config-validates",
                    title,
                    "not found: the webhook's pods cannot start",
                    "kubectl apply -k manifests/overlays/self-managed (the configMapGenerator of manifests/base); another name: --config-map",
                ),
                None,
            )
        }
        Lookup::Error(e) => {
            return (
                super::objects::unreadable("config-validates", title, "it", e, "configmaps"),
                None,
            )
        }
    };
    match parse(cm, key) {
        Err(e @ Unusable::NoKey { .. }) => (
            Check::fail(
                "config-validates",
                title,
                e.to_string(),
                "the webhook reads --config=/etc/persistence-webhook/config/persistence.yaml: name the key persistence.yaml, or pass --config-key",
            ),
            None,
        ),
        Ok(config) => {
            let detail = format!(
                "{} data and {} outputs stores",
                config.stores(Role::Data).len(),
                config.stores(Role::Outputs).len()
            );
            (Check::pass("config-validates", title, detail), Some(config))
        }
        Err(e @ Unusable::Invalid { .. }) => (
            Check::fail(
                "config-validates",
                title,
                e.to_string(),
                format!(
                    "fix {key} (try it offline: persistence-webhook mutate --config {key} --pod POD); the webhook keeps serving its last good config until then, and a restarted pod cannot start"
                ),
            ),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::check::report::Status;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    fn cm(key: &str, text: &str) -> Lookup<ConfigMap> {
        Lookup::Found(ConfigMap {
            data: Some(BTreeMap::from([(key.to_owned(), text.to_owned())])),
            ..Default::default()
        })
    }

    /// The shipped Deployment with its container's `args`, `env` and
    /// `volumeMounts`, and the template's `volumes`, replaced when given.
    fn deployment(args: &[&str], env: Value, mounts: Value, volumes: Value) -> Deployment {
        let mut d: Value =
            serde_yaml::from_str(include_str!("../../../manifests/base/deployment.yaml"))
                .expect("the manifest parses");
        let spec = &mut d["spec"]["template"]["spec"];
        let c = &mut spec["containers"][0];
        if !args.is_empty() {
            c["args"] = json!(args);
        }
        if !env.is_null() {
            c["env"] = env;
        }
        if !mounts.is_null() {
            c["volumeMounts"] = mounts;
        }
        if !volumes.is_null() {
            spec["volumes"] = volumes;
        }
        serde_json::from_value(d).expect("a Deployment")
    }

    fn at(config_map: &str, key: &str, path: &str) -> Result<Source, Unlocated> {
        Ok(Source {
            config_map: config_map.into(),
            key: key.into(),
            path: path.into(),
        })
    }

    #[test]
    fn locate_follows_config_to_its_mount_volume_and_key() {
        const SHIPPED: &str = "/etc/persistence-webhook/config/persistence.yaml";
        let n = Value::Null;
        let cm_items = json!([{"name": "config", "configMap": {"name": "pw-config",
            "items": [{"key": "team.yaml", "path": "cfg/persistence.yaml"}]}}]);
        let dir = json!([{"name": "config", "mountPath": "/etc/pw"}]);
        let cases: Vec<(&str, Deployment, Result<Source, Unlocated>)> = vec![
            (
                "the shipped manifests",
                deployment(&[], n.clone(), n.clone(), n.clone()),
                at("persistence-webhook-config", "persistence.yaml", SHIPPED),
            ),
            (
                "--config as two args, and a path with `.`",
                deployment(
                    &[
                        "serve",
                        "--config",
                        "/etc/persistence-webhook/./config/persistence.yaml",
                        "--demo",
                    ],
                    n.clone(),
                    n.clone(),
                    n.clone(),
                ),
                at(
                    "persistence-webhook-config",
                    "persistence.yaml",
                    "/etc/persistence-webhook/./config/persistence.yaml",
                ),
            ),
            (
                "a literal PERSISTENCE_WEBHOOK_CONFIG in the container's env",
                deployment(
                    &["serve", "--demo"],
                    json!([{"name": "PERSISTENCE_WEBHOOK_CONFIG", "value": SHIPPED}]),
                    n.clone(),
                    n.clone(),
                ),
                at("persistence-webhook-config", "persistence.yaml", SHIPPED),
            ),
            (
                "items map a key to a nested path",
                deployment(
                    &["serve", "--demo", "--config=/etc/pw/cfg/persistence.yaml"],
                    n.clone(),
                    dir.clone(),
                    cm_items.clone(),
                ),
                at("pw-config", "team.yaml", "/etc/pw/cfg/persistence.yaml"),
            ),
            (
                "items that do not list the file",
                deployment(
                    &["serve", "--demo", "--config=/etc/pw/persistence.yaml"],
                    n.clone(),
                    dir.clone(),
                    cm_items,
                ),
                Err(Unlocated::NotProjected {
                    volume: "config".into(),
                    config_map: "pw-config".into(),
                    file: "persistence.yaml".into(),
                }),
            ),
            (
                "a file mounted by subPath",
                deployment(
                    &["serve", "--demo", "--config=/etc/pw/persistence.yaml"],
                    n.clone(),
                    json!([{"name": "config", "mountPath": "/etc/pw/persistence.yaml", "subPath": "mine.yaml"}]),
                    json!([{"name": "config", "configMap": {"name": "pw-config"}}]),
                ),
                at("pw-config", "mine.yaml", "/etc/pw/persistence.yaml"),
            ),
            (
                "the deepest mount wins",
                deployment(
                    &[
                        "serve",
                        "--demo",
                        "--config=/etc/pw/config/persistence.yaml",
                    ],
                    n.clone(),
                    json!([{"name": "scratch", "mountPath": "/etc/pw"},
                           {"name": "config", "mountPath": "/etc/pw/config/"}]),
                    json!([{"name": "scratch", "emptyDir": {}},
                           {"name": "config", "configMap": {"name": "pw-config"}}]),
                ),
                at(
                    "pw-config",
                    "persistence.yaml",
                    "/etc/pw/config/persistence.yaml",
                ),
            ),
            (
                "a projected volume with one ConfigMap",
                deployment(
                    &["serve", "--demo", "--config=/etc/pw/persistence.yaml"],
                    n.clone(),
                    dir.clone(),
                    json!([{"name": "config", "projected": {"sources": [
                        {"secret": {"name": "s"}}, {"configMap": {"name": "pw-config"}}]}}]),
                ),
                at("pw-config", "persistence.yaml", "/etc/pw/persistence.yaml"),
            ),
            (
                "a projected volume with two ConfigMaps that could hold it",
                deployment(
                    &["serve", "--demo", "--config=/etc/pw/persistence.yaml"],
                    n.clone(),
                    dir.clone(),
                    json!([{"name": "config", "projected": {"sources": [
                        {"configMap": {"name": "a"}}, {"configMap": {"name": "b"}}]}}]),
                ),
                Err(Unlocated::Ambiguous {
                    volume: "config".into(),
                    file: "persistence.yaml".into(),
                    config_maps: vec!["a".into(), "b".into()],
                }),
            ),
            (
                "a Secret volume",
                deployment(
                    &[
                        "serve",
                        "--demo",
                        "--config=/etc/persistence-webhook/tls/tls.crt",
                    ],
                    n.clone(),
                    n.clone(),
                    n.clone(),
                ),
                Err(Unlocated::NotAConfigMap {
                    volume: "tls".into(),
                    path: "/etc/persistence-webhook/tls/tls.crt".into(),
                }),
            ),
            (
                "a path nothing mounts",
                deployment(
                    &["serve", "--demo", "--config=/srv/persistence.yaml"],
                    n.clone(),
                    n.clone(),
                    n.clone(),
                ),
                Err(Unlocated::NotMounted {
                    container: "webhook".into(),
                    path: "/srv/persistence.yaml".into(),
                }),
            ),
            (
                "a mount of a volume the template lacks",
                deployment(
                    &[],
                    n.clone(),
                    json!([{"name": "gone", "mountPath": "/etc/persistence-webhook/config"}]),
                    n.clone(),
                ),
                Err(Unlocated::NoVolume {
                    container: "webhook".into(),
                    volume: "gone".into(),
                }),
            ),
            (
                "serve --demo without --config",
                deployment(&["serve", "--demo"], n.clone(), n.clone(), n.clone()),
                Err(Unlocated::Demo {
                    container: "webhook".into(),
                }),
            ),
            (
                "no container runs serve",
                deployment(&["mutate"], n.clone(), n.clone(), n.clone()),
                Err(Unlocated::NoServe),
            ),
        ];
        for (why, d, want) in cases {
            assert_eq!(locate(&d, crate::serve::flags_in), want, "{why}");
        }
        let bad = deployment(&["serve", "--no-such-flag"], n.clone(), n.clone(), n);
        assert!(
            matches!(locate(&bad, crate::serve::flags_in), Err(Unlocated::Args { ref reason, .. }) if reason.contains("--no-such-flag")),
            "{:?}",
            locate(&bad, crate::serve::flags_in)
        );
    }

    #[test]
    fn the_shipped_config_validates_and_a_bad_one_names_the_field() {
        let shipped = include_str!("../../../manifests/base/persistence.yaml");
        let (c, config) = judge(
            &cm("persistence.yaml", shipped),
            "pw",
            "cfg",
            "persistence.yaml",
        );
        assert!(c.passed(), "{c:#?}");
        assert!(c.detail.contains("7 data and 4 outputs stores"), "{c:#?}");
        assert!(config.is_some());

        let bad = "data:\n  d1: {mountPath: relative, hostPath: /x}\n";
        let (c, config) = judge(
            &cm("persistence.yaml", bad),
            "pw",
            "cfg",
            "persistence.yaml",
        );
        assert_eq!(c.result, Status::Failed);
        assert!(c.detail.contains("data.d1.mountPath"), "{c:#?}");
        assert!(config.is_none());

        let (c, _) = judge(&cm("other.yaml", shipped), "pw", "cfg", "persistence.yaml");
        assert!(
            c.detail
                .contains("no key persistence.yaml (keys: other.yaml)"),
            "{c:#?}"
        );
        let (c, _) = judge(&Lookup::Missing, "pw", "cfg", "persistence.yaml");
        assert_eq!(c.result, Status::Failed);
        let (c, _) = judge(
            &Lookup::Error("forbidden".into()),
            "pw",
            "cfg",
            "persistence.yaml",
        );
        assert_eq!(c.result, Status::Warning);
    }
}
