//! The verdict on the persistence config in its ConfigMap (the "config"
//! group), parsed by [`Config::from_yaml`]: the very validator `serve`
//! runs at start-up and at every reload. Pure.

use super::objects::{ConfigMap, Lookup};
use super::report::Check;
use crate::config::{Config, Role};

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
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(key)) else {
        let keys: Vec<&str> = cm.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
        return (
            Check::fail(
                "config-validates",
                title,
                format!("it has no key {key} (keys: {})", keys.join(", ")),
                "the webhook reads --config=/etc/persistence-webhook/config/persistence.yaml: name the key persistence.yaml, or pass --config-key",
            ),
            None,
        );
    };
    match Config::from_yaml(text) {
        Ok(config) => {
            let detail = format!(
                "{} data and {} outputs stores",
                config.stores(Role::Data).len(),
                config.stores(Role::Outputs).len()
            );
            (Check::pass("config-validates", title, detail), Some(config))
        }
        Err(e) => (
            Check::fail(
                "config-validates",
                title,
                format!("{key}: {e}"),
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
    use std::collections::BTreeMap;

    fn cm(key: &str, text: &str) -> Lookup<ConfigMap> {
        Lookup::Found(ConfigMap {
            data: Some(BTreeMap::from([(key.to_owned(), text.to_owned())])),
            ..Default::default()
        })
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
