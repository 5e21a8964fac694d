//! Verdicts for one opted-in namespace (a "namespace NS" group), apart
//! from the probe: the webhook selects it, and every Secret (with the keys
//! the stores name) and every PersistentVolumeClaim that a store available
//! there references exists there. Pure: it judges what was fetched.

use std::collections::{BTreeMap, BTreeSet};

use super::objects::{LabelSelector, Lookup, PersistentVolumeClaim, SecretKeys};
use super::report::Check;
use crate::cluster::registration::selector::selects;
use crate::config::{Backend, Config, Role, Source};
use crate::vocabulary::{LABEL_INJECTION, OPT_IN};

/// What the stores available in a namespace reference there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Secret name -> key -> the stores that need it, with the config
    /// field naming the key (`secretKey`, `accessKeyIdKey`, ...).
    pub secrets: BTreeMap<String, BTreeMap<String, BTreeSet<Need>>>,
    /// Claim name -> the stores that mount it.
    pub claims: BTreeMap<String, BTreeSet<String>>,
}

/// A store that needs a Secret key, and the config field that names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    /// The store.
    pub store: String,
    /// The field (`secretKey`, `accessKeyIdKey`, `secretAccessKeyKey`,
    /// `sessionTokenKey`, `connectionStringKey`, `accountKeyKey`).
    pub field: &'static str,
}

impl Need {
    fn new(store: &str, field: &'static str) -> Need {
        Need {
            store: store.to_owned(),
            field,
        }
    }
}

/// The Secrets, keys and claims that the stores available in `namespace`
/// reference: any pod there may select any of them.
pub fn references(config: &Config, namespace: &str) -> References {
    let mut refs = References::default();
    for role in [Role::Data, Role::Outputs] {
        for store in config.available(role, namespace) {
            match store.backend() {
                Backend::Cloud {
                    credentials: Some(creds),
                    ..
                } => {
                    let keys = refs.secrets.entry(creds.secret.clone()).or_default();
                    let named = std::iter::once(("secretKey", creds.secret_key.as_str()))
                        .chain(creds.sdk.keys());
                    for (field, key) in named {
                        keys.entry(key.to_owned())
                            .or_default()
                            .insert(Need::new(store.name(), field));
                    }
                }
                // Keyless: workload identity, no Secret.
                Backend::Cloud {
                    credentials: None, ..
                } => {}
                Backend::Volume {
                    source: Source::Claim(claim),
                    ..
                } => {
                    refs.claims
                        .entry(claim.clone())
                        .or_default()
                        .insert(store.name().to_owned());
                }
                Backend::Volume { .. } => {}
            }
        }
    }
    refs
}

fn list(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// "store a needs" / "stores a, b need".
fn stores_need(stores: &BTreeSet<String>, verb: (&str, &str)) -> String {
    if stores.len() == 1 {
        format!("store {} {}", list(stores), verb.0)
    } else {
        format!("stores {} {}", list(stores), verb.1)
    }
}

/// The label that opts a namespace in: the webhook configuration's
/// namespaceSelector's first `matchLabels` entry (the chart's
/// `webhook.optInLabel`, the manifests' `polyaxon.com/persistence-injection:
/// enabled`), or the manifests' when it has none or cannot be read.
pub fn opt_in(selector: Option<&LabelSelector>) -> (String, String) {
    selector
        .and_then(|s| s.match_labels.as_ref())
        .and_then(|labels| {
            labels
                .get_key_value(LABEL_INJECTION)
                .or_else(|| labels.iter().next())
        })
        .map_or_else(
            || (LABEL_INJECTION.to_owned(), OPT_IN.to_owned()),
            |(k, v)| (k.clone(), v.clone()),
        )
}

/// The namespace is opted in and the webhook's namespaceSelector selects
/// it (`selector` is `None` when the configuration could not be read).
pub fn selected(
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    selector: Option<Option<&LabelSelector>>,
) -> Check {
    let (key, value) = opt_in(selector.flatten());
    let title = "the webhook is called for its pods";
    let Some(labels) = labels else {
        return Check::fail(
            "namespace-selected",
            title,
            format!("namespace {namespace} does not exist"),
            "check the name given to --namespace",
        );
    };
    if labels.get(&key) != Some(&value) {
        return Check::fail(
            "namespace-selected",
            title,
            format!("not labelled {key}={value}: its pods get no stores"),
            format!("kubectl label namespace {namespace} {key}={value}"),
        );
    }
    match selector {
        Some(sel) if !selects(sel, labels) => Check::fail(
            "namespace-selected",
            title,
            "labelled, but the webhook configuration's namespaceSelector does not select it",
            "compare the namespace's labels (kubectl get namespace --show-labels) with the namespaceSelector",
        ),
        _ => Check::pass(
            "namespace-selected",
            title,
            format!("labelled {key}={value}"),
        ),
    }
}

/// A referenced Secret exists in `namespace` with every key its stores name.
pub fn secret(
    namespace: &str,
    name: &str,
    keys: &BTreeMap<String, BTreeSet<Need>>,
    found: &Lookup<SecretKeys>,
) -> Check {
    let wanted: BTreeSet<String> = keys.keys().cloned().collect();
    let stores: BTreeSet<String> = keys.values().flatten().map(|n| n.store.clone()).collect();
    let title = format!("Secret {name} has key {}", list(&wanted));
    let from_file: Vec<String> = wanted
        .iter()
        .map(|k| format!("--from-file={k}=FILE"))
        .collect();
    match found {
        Lookup::Missing => Check::fail(
            "secret",
            title,
            format!(
                "not found in {namespace}; {} it: their pods stay in CreateContainerConfigError",
                stores_need(&stores, ("needs", "need"))
            ),
            format!(
                "kubectl -n {namespace} create secret generic {name} {}; or limit those stores with namespaces: in the config",
                from_file.join(" ")
            ),
        ),
        Lookup::Error(e) => super::objects::unreadable("secret", title, "it", e, "secrets"),
        Lookup::Found(s) => {
            let missing: BTreeSet<String> = wanted.difference(&s.keys).cloned().collect();
            if missing.is_empty() {
                return Check::pass("secret", title, format!("used by {}", list(&stores)));
            }
            let needing: BTreeSet<&Need> = missing
                .iter()
                .filter_map(|k| keys.get(k))
                .flatten()
                .collect();
            let stores: BTreeSet<String> = needing.iter().map(|n| n.store.clone()).collect();
            let fields: BTreeSet<String> = needing
                .iter()
                .map(|n| format!("{}.{}", n.store, n.field))
                .collect();
            Check::fail(
                "secret",
                title,
                format!(
                    "it has no key {} (it has: {}); {} it: their pods stay in CreateContainerConfigError",
                    list(&missing),
                    if s.keys.is_empty() { "none".to_owned() } else { list(&s.keys) },
                    stores_need(&stores, ("needs", "need"))
                ),
                format!(
                    "add {} to it (kubectl -n {namespace} edit secret {name}), or fix {} in the config",
                    list(&missing),
                    list(&fields)
                ),
            )
        }
    }
}

/// A referenced claim exists in `namespace` and is Bound.
pub fn claim(
    namespace: &str,
    name: &str,
    stores: &BTreeSet<String>,
    found: &Lookup<PersistentVolumeClaim>,
) -> Check {
    let title = format!("PersistentVolumeClaim {name} is Bound");
    match found {
        Lookup::Missing => Check::fail(
            "claim",
            title,
            format!(
                "not found in {namespace}; {} it: their pods stay Pending",
                stores_need(stores, ("mounts", "mount"))
            ),
            format!(
                "create PersistentVolumeClaim {name} in {namespace} (kubectl -n {namespace} apply -f pvc.yaml), or limit those stores with namespaces: in the config"
            ),
        ),
        Lookup::Error(e) => {
            super::objects::unreadable("claim", title, "it", e, "persistentvolumeclaims")
        }
        Lookup::Found(pvc) => {
            let phase = pvc
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Pending");
            match phase {
                "Bound" => Check::pass("claim", title, format!("used by {}", list(stores))),
                "Lost" => Check::fail(
                    "claim",
                    title,
                    format!("Lost: its volume is gone; {} it", stores_need(stores, ("cannot mount", "cannot mount"))),
                    format!("kubectl -n {namespace} describe pvc {name}; recreate its volume or the claim"),
                ),
                other => Check::warn(
                    "claim",
                    title,
                    format!(
                        "{other}: pods that mount it wait until it is bound (normal before the first pod with a WaitForFirstConsumer storage class)"
                    ),
                    format!("kubectl -n {namespace} describe pvc {name}"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::check::objects::{LabelSelectorRequirement, PersistentVolumeClaimStatus};
    use crate::cluster::check::report::Status;
    use crate::cluster::registration::selector::labels;

    const CONFIG: &str = r#"
data:
  d-claim: {mountPath: /d, existingClaim: shared-pvc}
  d-gcs: {store: gcs, bucket: "gs://d", secret: gcs-secret, secretKey: gcs-key.json}
  team-a-only: {mountPath: /a, existingClaim: a-pvc, namespaces: [team-a]}
  d-host: {mountPath: /h, hostPath: /h}
outputs:
  o-gcs: {store: gcs, bucket: "gs://o", secret: gcs-secret, secretKey: gcs-key.json}
  o-s3:
    store: s3
    bucket: "s3://o"
    secret: gcs-secret
    secretKey: s3-key.json
    accessKeyIdKey: aws-id
    secretAccessKeyKey: aws-secret
    namespaces: [team-b]
  o-keyless: {store: gcs, bucket: "gs://keyless"}
  o-claim: {mountPath: /o, existingClaim: shared-pvc}
"#;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn needs(items: &[(&str, &'static str)]) -> BTreeSet<Need> {
        items.iter().map(|(s, f)| Need::new(s, f)).collect()
    }

    #[test]
    fn references_follow_what_each_namespace_may_use() {
        let config = Config::from_yaml(CONFIG).expect("valid");
        let a = references(&config, "team-a");
        assert_eq!(
            a.claims,
            BTreeMap::from([
                ("a-pvc".to_owned(), set(&["team-a-only"])),
                ("shared-pvc".to_owned(), set(&["d-claim", "o-claim"])),
            ])
        );
        assert_eq!(
            a.secrets,
            BTreeMap::from([(
                "gcs-secret".to_owned(),
                BTreeMap::from([(
                    "gcs-key.json".to_owned(),
                    needs(&[("d-gcs", "secretKey"), ("o-gcs", "secretKey")])
                )])
            )])
        );
        // team-b also gets o-s3: its secretKey and both SDK keys; the keyless
        // store references no Secret.
        let b = references(&config, "team-b");
        assert!(!b.claims.contains_key("a-pvc"));
        let keys = b.secrets.get("gcs-secret").cloned().unwrap_or_default();
        assert_eq!(
            keys.keys().map(String::as_str).collect::<Vec<_>>(),
            ["aws-id", "aws-secret", "gcs-key.json", "s3-key.json"]
        );
        assert_eq!(
            keys.get("aws-id"),
            Some(&needs(&[("o-s3", "accessKeyIdKey")]))
        );
        assert_eq!(b.secrets.len(), 1);
    }

    #[test]
    fn secrets_must_exist_with_every_key_and_values_are_never_needed() {
        let keys = BTreeMap::from([
            ("gcs-key.json".to_owned(), needs(&[("d-gcs", "secretKey")])),
            ("s3-key.json".to_owned(), needs(&[("o-s3", "secretKey")])),
        ]);
        let c = secret("team-b", "creds", &keys, &Lookup::Missing);
        assert_eq!(c.result, Status::Failed);
        assert!(c.detail.contains("not found in team-b"), "{c:#?}");
        assert!(
            c.hint.as_deref().is_some_and(|h| h.contains(
                "kubectl -n team-b create secret generic creds --from-file=gcs-key.json=FILE --from-file=s3-key.json=FILE"
            )),
            "{c:#?}"
        );
        let partial = Lookup::Found(SecretKeys::new("creds", ["gcs-key.json", "other"]));
        let c = secret("team-b", "creds", &keys, &partial);
        assert_eq!(c.result, Status::Failed);
        assert!(
            c.detail
                .contains("no key s3-key.json (it has: gcs-key.json, other); store o-s3 needs it"),
            "{c:#?}"
        );
        let full = Lookup::Found(SecretKeys::new("creds", ["gcs-key.json", "s3-key.json"]));
        let c = secret("team-b", "creds", &keys, &full);
        assert!(c.passed(), "{c:#?}");
        assert_eq!(c.title, "Secret creds has key gcs-key.json, s3-key.json");
        let c = secret("team-b", "creds", &keys, &Lookup::Error("forbidden".into()));
        assert_eq!(c.result, Status::Warning);
    }

    #[test]
    fn claims_must_exist_and_be_bound() {
        let stores = set(&["d-claim"]);
        let pvc = |phase: Option<&str>| {
            Lookup::Found(PersistentVolumeClaim {
                status: Some(PersistentVolumeClaimStatus {
                    phase: phase.map(str::to_owned),
                    ..Default::default()
                }),
                ..Default::default()
            })
        };
        let cases = [
            (pvc(Some("Bound")), Status::Passed, "used by d-claim"),
            (pvc(Some("Pending")), Status::Warning, "Pending"),
            (pvc(None), Status::Warning, "Pending"),
            (pvc(Some("Lost")), Status::Failed, "Lost"),
            (Lookup::Missing, Status::Failed, "not found in team-a"),
        ];
        for (found, status, fragment) in cases {
            let c = claim("team-a", "shared-pvc", &stores, &found);
            assert_eq!(c.result, status, "{c:#?}");
            assert!(c.detail.contains(fragment), "{c:#?}");
        }
    }

    #[test]
    fn a_namespace_must_be_labelled_and_selected() {
        let on = labels([(LABEL_INJECTION, OPT_IN)]);
        assert!(selected("a", Some(&on), None).passed());
        let c = selected("a", Some(&labels([])), None);
        assert_eq!(
            c.hint.as_deref(),
            Some("kubectl label namespace a polyaxon.com/persistence-injection=enabled")
        );
        assert_eq!(selected("a", None, None).result, Status::Failed);
        let picky = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..Default::default()
        };
        let c = selected("a", Some(&on), Some(Some(&picky)));
        assert_eq!(c.result, Status::Failed);
        assert!(c.detail.contains("namespaceSelector"));
        assert!(selected("a", Some(&on), Some(None)).passed());
    }

    /// The chart's `webhook.optInLabel` renamed: the label is the
    /// namespaceSelector's, in the verdict and in its hint.
    #[test]
    fn the_opt_in_label_is_the_webhook_configurations() {
        let custom = LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "team.example/stores".into(),
                "on".into(),
            )])),
            ..Default::default()
        };
        assert_eq!(
            opt_in(Some(&custom)),
            ("team.example/stores".to_owned(), "on".to_owned())
        );
        assert_eq!(
            opt_in(None),
            (LABEL_INJECTION.to_owned(), OPT_IN.to_owned()),
            "unread configuration: the manifests' label"
        );
        let ours = labels([("team.example/stores", "on")]);
        assert!(selected("a", Some(&ours), Some(Some(&custom))).passed());
        let c = selected(
            "a",
            Some(&labels([(LABEL_INJECTION, OPT_IN)])),
            Some(Some(&custom)),
        );
        assert_eq!(c.result, Status::Failed);
        assert_eq!(
            c.hint.as_deref(),
            Some("kubectl label namespace a team.example/stores=on")
        );
    }
}
