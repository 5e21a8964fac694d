//! The reading side of `check`: every API call it makes (gets, one list of
//! namespaces, and the dry-run probe pods), in the order the verdicts need
//! them, with the per-namespace work run concurrently under a bound. The
//! verdicts themselves are the pure rooms next door.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::SystemTime;

use anyhow::Context as _;
use futures_util::stream::{self, StreamExt as _};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::objects::{
    ConfigMap, Deployment, Endpoints, Lookup, MutatingWebhookConfiguration, Namespace,
    PersistentVolumeClaim, SecretKeys, Service, ServingSecret, VersionInfo,
};
use super::report::{Check, Report};
use super::webhook::{Expect, Registration, Target};
use super::workload::ServeParser;
use super::{certificates, config_map, namespace, policies, probe, webhook, workload, CheckArgs};
use crate::bounds::Bounds;
use crate::config::Config;

/// The oldest minor version the manifests support: `matchConditions` are
/// GA there.
const OLDEST_MINOR: u32 = 30;

/// What an API error says, without the client's wrapping.
fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(r) => format!("{} ({})", r.message, r.reason),
        other => other.to_string(),
    }
}

async fn lookup<K>(api: Api<K>, name: &str) -> Lookup<K>
where
    K: Clone + DeserializeOwned + Debug,
{
    match api.get_opt(name).await {
        Ok(Some(k)) => Lookup::Found(k),
        Ok(None) => Lookup::Missing,
        Err(e) => Lookup::Error(reason(&e)),
    }
}

/// A cluster-scoped `admissionregistration.k8s.io/v1` object by kind,
/// resource and name, as JSON.
async fn lookup_policy(
    client: kube::Client,
    kind: &str,
    plural: &str,
    name: &str,
) -> Lookup<Value> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
        plural,
    );
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    match lookup(api, name).await {
        Lookup::Found(o) => match serde_json::to_value(o) {
            Ok(v) => Lookup::Found(v),
            Err(e) => Lookup::Error(e.to_string()),
        },
        Lookup::Missing => Lookup::Missing,
        Lookup::Error(e) => Lookup::Error(e),
    }
}

/// Creates `pod` in `namespace` as a server-side dry run: the pod the API
/// server would store, or its refusal message.
async fn dry_run(client: kube::Client, namespace: &str, pod: Value) -> Result<Value, String> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Pod"), "pods");
    let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &resource);
    let object: DynamicObject = serde_json::from_value(pod).map_err(|e| e.to_string())?;
    let params = PostParams {
        dry_run: true,
        field_manager: Some("persistence-webhook-check".into()),
    };
    match api.create(&params, &object).await {
        Ok(created) => serde_json::to_value(created).map_err(|e| e.to_string()),
        Err(kube::Error::Api(r)) => Err(r.message),
        Err(e) => Err(e.to_string()),
    }
}

/// Everything the per-namespace checks share.
struct Shared<'a> {
    client: kube::Client,
    args: &'a CheckArgs,
    config: Option<&'a Config>,
    bounds: Bounds,
    registration: Option<&'a Registration>,
    /// Why the probes cannot run, if they cannot.
    probe_blocked: Option<String>,
}

/// Builds the whole report, reading `serve`'s flags in the Deployment's
/// args with `parse`. Fails only when the API server cannot be reached at
/// all.
pub async fn report(
    client: kube::Client,
    args: &CheckArgs,
    now: SystemTime,
    parse: ServeParser,
) -> anyhow::Result<Report> {
    let info = client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!(reason(&e)))
        .context("cannot reach the API server (GET /version)")?;
    let mut report = Report::default();
    report.push("kubernetes-api", api_checks(&info));

    let ns = args.webhook_namespace.as_str();
    let name = args.webhook_name.as_str();
    let (hook, deploy, cm) = tokio::join!(
        lookup(
            Api::<MutatingWebhookConfiguration>::all(client.clone()),
            name
        ),
        lookup(Api::<Deployment>::namespaced(client.clone(), ns), name),
        lookup(
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            &args.config_map
        ),
    );
    let settings = workload::serve_settings(deploy.found(), parse);
    // The serving Secret: the one named, else the one `serve` manages
    // itself in the in-cluster mode, else the overlays' file Secret.
    let tls_secret = args
        .tls_secret
        .as_deref()
        .or(settings.certificate_secret.as_deref())
        .unwrap_or(super::FILES_TLS_SECRET);
    let serving = lookup(
        Api::<ServingSecret>::namespaced(client.clone(), ns),
        tls_secret,
    )
    .await;

    // The webhook configuration, judged against serve's actual timeout.
    let expect = Expect {
        config_name: name,
        namespace: ns,
        service: name,
        request_timeout: settings.request_timeout,
        request_timeout_from: &settings.from,
    };
    let (hook_checks, registration) = match &hook {
        Lookup::Error(e) => (
            vec![super::objects::unreadable(
                "webhook-exists",
                format!("MutatingWebhookConfiguration {name} exists"),
                "it",
                e,
                "mutatingwebhookconfigurations",
            )],
            None,
        ),
        other => webhook::judge(other.found(), &expect),
    };
    report.push("webhook configuration", hook_checks);

    // Certificates.
    let secret_ref = format!("{ns}/{tls_secret}");
    let server_name = registration
        .as_ref()
        .map(|r| r.target.server_name())
        .unwrap_or_else(|| format!("{name}.{ns}.svc"));
    let verified = match &registration {
        Some(reg) => {
            let (checks, verified) = certificates::judge(&certificates::Inputs {
                ca_bundle: reg.ca_bundle.as_deref(),
                serving: &serving,
                secret_ref: &secret_ref,
                in_cluster: settings.certificate_secret.as_deref() == Some(tls_secret),
                deployment: name,
                server_name: &server_name,
                now,
            });
            report.push("certificates", checks);
            verified
        }
        None => {
            report.push(
                "certificates",
                vec![Check::skip(
                    "ca-bundle",
                    "certificates",
                    "needs the webhook configuration (its caBundle and address)",
                )],
            );
            None
        }
    };

    // What serves the reviews.
    let target = registration.as_ref().map(|r| &r.target);
    let (service, endpoints) = match target {
        Some(Target::Service {
            namespace, name, ..
        }) => tokio::join!(
            lookup(Api::<Service>::namespaced(client.clone(), namespace), name),
            lookup(
                Api::<Endpoints>::namespaced(client.clone(), namespace),
                name
            ),
        ),
        _ => (Lookup::Missing, Lookup::Missing),
    };
    let (deploy_check, ready) = workload::deployment(&deploy, ns, name, target);
    let (endpoints_check, reachable) = workload::endpoints(target, &service, &endpoints);
    report.push("deployment", vec![deploy_check, endpoints_check]);

    // The config.
    let (config_check, config) = config_map::judge(&cm, ns, &args.config_map, &args.config_key);
    report.push("config", vec![config_check]);

    // A hybrid install's policies.
    let pname = args.policy_name.as_str();
    let [(k0, r0), (k1, r1), (k2, r2), (k3, r3)] = policies::KINDS;
    let installed = tokio::join!(
        lookup_policy(client.clone(), k0, r0, pname),
        lookup_policy(client.clone(), k1, r1, pname),
        lookup_policy(client.clone(), k2, r2, pname),
        lookup_policy(client.clone(), k3, r3, pname),
    );
    let installed = [installed.0, installed.1, installed.2, installed.3];
    let hybrid_checks = policies::judge(&policies::Inputs {
        conditions: registration
            .as_ref()
            .map(|r| r.match_conditions.as_slice())
            .unwrap_or_default(),
        installed: &installed,
        config: config.as_ref(),
        options: &persistence_webhook_core::policy::Options {
            webhook_namespace: ns.to_owned(),
            name: pname.to_owned(),
            hybrid: true,
        },
        config_map: (ns, &args.config_map, &args.config_key),
    });
    if !hybrid_checks.is_empty() {
        report.push("hybrid policies", hybrid_checks);
    }

    // Namespaces.
    let opt_in = namespace::opt_in(
        registration
            .as_ref()
            .and_then(|r| r.namespace_selector.as_ref()),
    );
    let (namespaces, listing) = namespaces(&client, args, &opt_in).await;
    if let Some(c) = listing {
        report.push("namespaces", vec![c]);
    }
    let probe_blocked = if registration.is_none() {
        Some("needs the webhook configuration".to_owned())
    } else if registration.as_ref().is_some_and(|r| !r.sends_pod_create) {
        Some("the webhook's rules never send a pod CREATE, so the API server never calls it (see rules in webhook configuration)".to_owned())
    } else if verified == Some(false) {
        Some("the caBundle does not verify the serving certificate (see certificates)".to_owned())
    } else if ready == Some(false) {
        Some("the Deployment has no ready replica (see deployment)".to_owned())
    } else if reachable == Some(false) {
        Some("the Service has no ready endpoint (see deployment)".to_owned())
    } else {
        None
    };
    let shared = Shared {
        client: client.clone(),
        args,
        config: config.as_ref(),
        bounds: settings.bounds,
        registration: registration.as_ref(),
        probe_blocked,
    };
    let mut groups: Vec<(String, Vec<Check>)> = stream::iter(namespaces)
        .map(|(ns, labels)| {
            let shared = &shared;
            async move {
                let checks = one_namespace(shared, &ns, labels.as_ref()).await;
                (ns, checks)
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .collect()
        .await;
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for (ns, checks) in groups {
        report.push(format!("namespace {ns}"), checks);
    }
    Ok(report)
}

fn api_checks(info: &VersionInfo) -> Vec<Check> {
    let mut checks = vec![Check::pass(
        "api-reachable",
        "the API server is reachable",
        info.git_version.clone(),
    )];
    let minor: Option<u32> = info
        .minor
        .trim_end_matches('+')
        .parse()
        .ok()
        .filter(|_| info.major == "1");
    checks.push(match minor {
        Some(m) if m < OLDEST_MINOR => Check::warn(
            "api-version",
            "the API server's version is supported",
            format!(
                "1.{m} is older than the oldest supported (1.{OLDEST_MINOR}, where the webhook's matchConditions are GA): {}",
                match m {
                    28.. => "its matchConditions apply as beta (on by default), untested",
                    27 => "its matchConditions are dropped unless the AdmissionWebhookMatchConditions feature gate is on, so mislabelled kube- namespaces and mirror pods are sent to the webhook",
                    _ => "it does not know matchConditions (kubectl apply refuses them), so mislabelled kube- namespaces and mirror pods are sent to the webhook once they are removed",
                }
            ),
            "upgrade the cluster (docs/src/operators/install.md, \"Supported Kubernetes\", says what is lost below 1.30)",
        ),
        Some(m) => Check::pass("api-version", "the API server's version is supported", format!("1.{m}")),
        None => Check::warn(
            "api-version",
            "the API server's version is supported",
            format!("cannot read the version {}.{}", info.major, info.minor),
            "run `kubectl version` and make sure the server is Kubernetes 1.30 or later, the oldest supported",
        ),
    });
    checks
}

type Labels = Option<BTreeMap<String, String>>;

/// The namespaces to check, with their labels (`None`: it does not exist),
/// and a check when the list itself is worth a line.
async fn namespaces(
    client: &kube::Client,
    args: &CheckArgs,
    (key, value): &(String, String),
) -> (Vec<(String, Labels)>, Option<Check>) {
    let api = Api::<Namespace>::all(client.clone());
    if !args.namespaces.is_empty() {
        let found = stream::iter(args.namespaces.iter().cloned())
            .map(|ns| {
                let api = api.clone();
                async move {
                    let labels = match lookup(api, &ns).await {
                        Lookup::Found(n) => Some(n.metadata.labels.unwrap_or_default()),
                        _ => None,
                    };
                    (ns, labels)
                }
            })
            .buffer_unordered(usize::from(args.concurrency))
            .collect()
            .await;
        return (found, None);
    }
    let selector = format!("{key}={value}");
    const TITLE: &str = "namespaces opted in";
    match api.list(&ListParams::default().labels(&selector)).await {
        Ok(list) if list.items.is_empty() => (
            Vec::new(),
            Some(Check::warn(
                "namespaces",
                TITLE,
                format!("no namespace is labelled {selector}: no pod gets stores"),
                format!("kubectl label namespace NS {selector}"),
            )),
        ),
        Ok(list) => {
            let n = list.items.len();
            let found = list
                .items
                .into_iter()
                .filter_map(|ns| {
                    let name = ns.metadata.name?;
                    Some((name, Some(ns.metadata.labels.unwrap_or_default())))
                })
                .collect();
            (found, Some(Check::pass("namespaces", TITLE, format!("{n} labelled {selector}"))))
        }
        Err(e) => (
            Vec::new(),
            Some(Check::warn(
                "namespaces",
                TITLE,
                format!("cannot list namespaces: {}", reason(&e)),
                "run check with the permissions of manifests/check, or name namespaces with --namespace",
            )),
        ),
    }
}

async fn one_namespace(
    shared: &Shared<'_>,
    ns: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Vec<Check> {
    let selector = shared.registration.map(|r| r.namespace_selector.as_ref());
    let selected = namespace::selected(ns, labels, selector);
    if labels.is_none() {
        return vec![selected];
    }
    let Some(config) = shared.config else {
        return vec![
            selected,
            Check::skip(
                "references",
                "Secrets and claims of its stores",
                "needs a valid config (see config)",
            ),
        ];
    };
    let client = &shared.client;
    let refs = namespace::references(config, ns);
    let secrets = stream::iter(refs.secrets.iter())
        .map(|(name, keys)| async move {
            let found = lookup(Api::<SecretKeys>::namespaced(client.clone(), ns), name).await;
            namespace::secret(ns, name, keys, &found)
        })
        .buffered(8)
        .collect::<Vec<_>>();
    let claims = stream::iter(refs.claims.iter())
        .map(|(name, stores)| async move {
            let found = lookup(
                Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns),
                name,
            )
            .await;
            namespace::claim(ns, name, stores, &found)
        })
        .buffered(8)
        .collect::<Vec<_>>();
    let blocked = if selected.passed() {
        shared.probe_blocked.clone()
    } else {
        Some("the webhook is not called here (see above)".to_owned())
    };
    // A hybrid install's webhook sees only annotated pods (and a few
    // others): the plain probe goes through the policies there, so an
    // annotated one tries the webhook itself.
    let hybrid = shared.registration.is_some_and(|r| {
        r.match_conditions
            .iter()
            .any(|c| c.name == persistence_webhook_core::policy::hybrid::WEBHOOK_CONDITION)
    });
    let probes: &[&probe::Probe] = if hybrid {
        &[&probe::Probe::PLAIN, &probe::Probe::ANNOTATED]
    } else {
        &[&probe::Probe::PLAIN]
    };
    let probe = |which: &'static probe::Probe| {
        let blocked = blocked.clone();
        async move {
            if let Some(why) = blocked {
                return Check::skip(which.id, which.title, why);
            }
            let image = &shared.args.probe_image;
            let (baseline, probed) = tokio::join!(
                dry_run(client.clone(), ns, probe::pod(image, true, which)),
                dry_run(client.clone(), ns, probe::pod(image, false, which)),
            );
            probe::judge(
                config,
                &shared.bounds,
                ns,
                &baseline,
                &probed,
                &probe::Webhook {
                    webhook_namespace: &shared.args.webhook_namespace,
                    webhook_name: &shared.args.webhook_name,
                    conditions: shared
                        .registration
                        .map(|r| r.match_conditions.as_slice())
                        .unwrap_or_default(),
                    probe: which,
                },
            )
        }
    };
    let probes = futures_util::future::join_all(probes.iter().map(|p| probe(p)));
    let (probes, secrets, claims) = tokio::join!(probes, secrets, claims);
    let mut checks = vec![selected];
    checks.extend(probes);
    if secrets.is_empty() && claims.is_empty() {
        checks.push(Check::pass(
            "references",
            "Secrets and claims of its stores",
            "its stores reference none",
        ));
    }
    checks.extend(secrets);
    checks.extend(claims);
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::check::report::Status;

    fn version(major: &str, minor: &str) -> VersionInfo {
        VersionInfo {
            major: major.into(),
            minor: minor.into(),
            git_version: format!("v{major}.{minor}.0"),
            ..Default::default()
        }
    }

    #[test]
    fn the_version_warns_below_1_30_and_reads_vendor_minors() {
        let cases = [
            ("1", "20", Status::Warning, "does not know matchConditions"),
            ("1", "27", Status::Warning, "feature gate"),
            ("1", "29", Status::Warning, "beta"),
            ("1", "30", Status::Passed, "1.30"),
            ("1", "36+", Status::Passed, "1.36"),
            ("1", "19+", Status::Warning, "does not know"),
            ("2", "0", Status::Warning, "1.30 or later"),
        ];
        for (major, minor, want, fragment) in cases {
            let checks = api_checks(&version(major, minor));
            assert!(checks[0].passed());
            assert_eq!(checks[1].result, want, "{major}.{minor}: {:#?}", checks[1]);
            let text = format!(
                "{} {}",
                checks[1].detail,
                checks[1].hint.as_deref().unwrap_or_default()
            );
            assert!(text.contains(fragment), "{major}.{minor}: {:#?}", checks[1]);
        }
    }
}
