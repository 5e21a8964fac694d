//! Verdicts on what serves the reviews (the "deployment" group): the
//! Deployment has ready replicas, the Service has ready endpoints (not
//! for a URL registration), and the settings `serve` runs with, read from
//! the Deployment's args with the same flag parser. Pure.

use std::path::PathBuf;
use std::time::Duration;

use super::objects::{Container, Deployment, Endpoints, Lookup, Service};
use super::report::Check;
use super::webhook::Target;
use crate::bounds::Bounds;

/// The settings of `serve` that the checks compare against.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    /// `--request-timeout`.
    pub request_timeout: Duration,
    /// `--max-patch-bytes`, `--max-injected-items`: the probe is predicted
    /// with them.
    pub bounds: Bounds,
    /// The Secret `serve` keeps its certificate in, when it manages it
    /// itself (`--certificates in-cluster`).
    pub certificate_secret: Option<String>,
    /// Where they came from, for messages.
    pub from: String,
}

/// What `check` (and live `explain`) read of `serve`'s flags in a
/// Deployment's args.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeFlags {
    /// `--config`, from the args or (as `serve` parses) the environment.
    pub config: Option<PathBuf>,
    /// `--demo`.
    pub demo: bool,
    /// `--request-timeout`.
    pub request_timeout: Duration,
    /// `--max-patch-bytes`, `--max-injected-items`.
    pub bounds: Bounds,
    /// `--certificate-secret` when `--certificates in-cluster`: the Secret
    /// `serve` keeps its own certificate in.
    pub certificate_secret: Option<String>,
}

/// `serve`'s own parser of a container's args (from `serve` on) and its
/// env vars with literal values (`literal_env`): the flags `check` reads,
/// or the parser's first line. The command layer hands it in
/// (`crate::serve::flags_in`), so that `check` judges the args as `serve`
/// in that container would take them, without naming the command line.
pub type ServeParser = fn(&[String], &[(String, String)]) -> Result<ServeFlags, String>;

/// A container's env vars that have a literal value, in order (a value
/// from a Secret or ConfigMap cannot be known here: its flag is read as
/// not given).
pub(crate) fn literal_env(container: &Container) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

/// The Deployment's container that runs `serve` (its args start with
/// `serve`), with those args.
pub(crate) fn serve_container(deployment: &Deployment) -> Option<(&Container, &[String])> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| {
            p.containers.iter().find_map(|c| {
                c.args
                    .as_deref()
                    .filter(|a| a.first().is_some_and(|x| x == "serve"))
                    .map(|a| (c, a))
            })
        })
}

/// `serve`'s settings from the Deployment's container that runs `serve`
/// (its args read by `parse`, `serve`'s own parser), else `serve`'s
/// defaults.
pub fn serve_settings(deployment: Option<&Deployment>, parse: ServeParser) -> ServeSettings {
    let settings = |args: &[String], env: &[(String, String)]| {
        parse(args, env).map(|s| (s.request_timeout, s.bounds, s.certificate_secret))
    };
    let (parsed, from) = match deployment.and_then(serve_container) {
        Some((container, args)) => match settings(args, &literal_env(container)) {
            Ok(parsed) => (Some(parsed), "the Deployment's args".to_owned()),
            Err(e) => (
                None,
                format!("serve's default; the Deployment's args do not parse: {e}"),
            ),
        },
        None => (None, "serve's default".to_owned()),
    };
    let (request_timeout, bounds, certificate_secret) = parsed.unwrap_or_else(|| {
        let args = ["serve".to_owned(), "--demo".to_owned()];
        settings(&args, &[]).unwrap_or((Duration::from_secs(8), Bounds::default(), None))
    });
    ServeSettings {
        request_timeout,
        bounds,
        certificate_secret,
        from,
    }
}

/// The Deployment's readiness; the flag is `Some(false)` when it exists
/// with no ready replica (the probes then say so instead of failing).
pub fn deployment(
    found: &Lookup<Deployment>,
    namespace: &str,
    name: &str,
    target: Option<&Target>,
) -> (Check, Option<bool>) {
    let title = format!("Deployment {namespace}/{name} has ready replicas");
    let look = format!(
        "kubectl -n {namespace} describe deployment {name}; kubectl -n {namespace} logs deploy/{name}"
    );
    match found {
        Lookup::Missing => {
            let check = match target {
                Some(Target::Url(url)) => Check::warn(
                    "deployment-ready",
                    title,
                    format!("not found; the API server calls {url}: fine if the webhook runs outside the cluster"),
                    "pass --webhook-namespace and --webhook-name of your install",
                ),
                _ => Check::fail(
                    "deployment-ready",
                    title,
                    "not found: nothing serves the webhook",
                    "kubectl apply -k manifests/overlays/self-managed (or overlays/cert-manager); another name: --webhook-namespace, --webhook-name",
                ),
            };
            (check, None)
        }
        Lookup::Error(e) => (
            super::objects::unreadable("deployment-ready", title, "it", e, "deployments"),
            None,
        ),
        Lookup::Found(d) => {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let ready = d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0);
            if want == 0 {
                (
                    Check::fail(
                        "deployment-ready",
                        title,
                        "scaled to zero (spec.replicas: 0): no pod serves the webhook; with failurePolicy Fail, pods in opted-in namespaces are refused",
                        format!("kubectl -n {namespace} scale deployment {name} --replicas=2 (the manifests run 2)"),
                    ),
                    Some(false),
                )
            } else if ready <= 0 {
                (
                    Check::fail(
                        "deployment-ready",
                        title,
                        format!("0 of {want} replicas ready: with failurePolicy Fail, pods in opted-in namespaces are refused"),
                        look,
                    ),
                    Some(false),
                )
            } else if ready < want {
                (
                    Check::warn(
                        "deployment-ready",
                        title,
                        format!("{ready} of {want} replicas ready"),
                        look,
                    ),
                    Some(true),
                )
            } else {
                (
                    Check::pass("deployment-ready", title, format!("{ready}/{want} ready")),
                    Some(true),
                )
            }
        }
    }
}

/// The Service behind a Service registration has a ready endpoint; the
/// flag is `Some(false)` when it has none.
pub fn endpoints(
    target: Option<&Target>,
    service: &Lookup<Service>,
    endpoints: &Lookup<Endpoints>,
) -> (Check, Option<bool>) {
    let (namespace, name, port) = match target {
        Some(Target::Service {
            namespace,
            name,
            port,
        }) => (namespace, name, *port),
        Some(Target::Url(url)) => {
            return (
                Check::skip(
                    "service-endpoints",
                    "Service has ready endpoints",
                    format!("registered by URL {url}: the API server uses no Service"),
                ),
                None,
            )
        }
        None => {
            return (
                Check::skip(
                    "service-endpoints",
                    "Service has ready endpoints",
                    "needs the webhook configuration's clientConfig",
                ),
                None,
            )
        }
    };
    let title = format!("Service {namespace}/{name} has ready endpoints");
    let svc = match service {
        Lookup::Missing => return (
            Check::fail(
                "service-endpoints",
                title,
                "the Service the webhook configuration names does not exist",
                "kubectl apply -k manifests/overlays/self-managed (or fix clientConfig.service)",
            ),
            Some(false),
        ),
        Lookup::Error(e) => {
            return (
                super::objects::unreadable("service-endpoints", title, "it", e, "services"),
                None,
            )
        }
        Lookup::Found(s) => s,
    };
    let has_port = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .is_some_and(|ports| ports.iter().any(|p| p.port == port));
    if !has_port {
        return (
            Check::fail(
                "service-endpoints",
                title,
                format!("the Service has no port {port}, which clientConfig.service.port names"),
                "make clientConfig.service.port one of the Service's ports (443 in the manifests)",
            ),
            Some(false),
        );
    }
    let subsets = endpoints
        .found()
        .and_then(|e| e.subsets.as_deref())
        .unwrap_or_default();
    let ready: Vec<&str> = subsets
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| a.ip.as_str())
        .collect();
    let not_ready = subsets
        .iter()
        .flat_map(|s| s.not_ready_addresses.iter().flatten())
        .count();
    if let Lookup::Error(e) = endpoints {
        return (
            super::objects::unreadable("service-endpoints", title, "its Endpoints", e, "endpoints"),
            None,
        );
    }
    if ready.is_empty() {
        return (
            Check::fail(
                "service-endpoints",
                title,
                format!("no ready endpoint ({not_ready} not ready): the API server has nowhere to send reviews"),
                format!("kubectl -n {namespace} get pods,endpoints; the Service's selector must match the webhook's pods, which must pass /readyz"),
            ),
            Some(false),
        );
    }
    (
        Check::pass(
            "service-endpoints",
            title,
            format!("{} ready ({})", ready.len(), ready.join(", ")),
        ),
        Some(true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::check::objects::{
        DeploymentSpec, DeploymentStatus, EndpointAddress, EndpointSubset,
    };
    use crate::cluster::check::report::Status;

    fn manifest() -> Deployment {
        serde_yaml::from_str(include_str!("../../../manifests/base/deployment.yaml"))
            .expect("the manifest parses")
    }

    /// The manifest's container that runs `serve`, to change.
    fn first_container(d: &mut Deployment) -> Option<&mut Container> {
        d.spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|p| p.containers.first_mut())
    }

    fn with_ready(ready: Option<i32>) -> Deployment {
        let mut d = manifest();
        d.status = Some(DeploymentStatus {
            ready_replicas: ready,
            ..Default::default()
        });
        d
    }

    #[test]
    fn serve_settings_come_from_the_deployments_args() {
        let d = manifest();
        let s = serve_settings(Some(&d), crate::serve::flags_in);
        assert_eq!(s.request_timeout, Duration::from_secs(8));
        assert_eq!(s.bounds.max_patch_bytes, 1_048_576);
        assert_eq!(s.from, "the Deployment's args");
        let mut fast = manifest();
        if let Some(c) = first_container(&mut fast) {
            if let Some(args) = c.args.as_mut() {
                for a in args
                    .iter_mut()
                    .filter(|a| a.starts_with("--request-timeout"))
                {
                    *a = "--request-timeout=3s".into();
                }
                args.push("--max-injected-items=9".into());
            }
        }
        let s = serve_settings(Some(&fast), crate::serve::flags_in);
        assert_eq!(s.request_timeout, Duration::from_secs(3));
        assert_eq!(s.bounds.max_injected_items, 9);
        // Args serve would refuse: the defaults, and the message says why.
        if let Some(args) = fast
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|p| p.containers[0].args.as_mut())
        {
            args.push("--no-such-flag".into());
        }
        let s = serve_settings(Some(&fast), crate::serve::flags_in);
        assert_eq!(s.request_timeout, Duration::from_secs(8));
        assert!(
            s.from.contains("do not parse") && s.from.contains("--no-such-flag"),
            "{}",
            s.from
        );
        let s = serve_settings(None, crate::serve::flags_in);
        assert_eq!(
            (s.request_timeout, s.from.as_str()),
            (Duration::from_secs(8), "serve's default")
        );
        assert_eq!(s.bounds, Bounds::default());
    }

    /// The Secret `serve` keeps its own certificate in comes from the
    /// Deployment's args or its container's env, only in the in-cluster
    /// mode (`check` looks there for the serving certificate).
    #[test]
    fn the_in_cluster_certificate_secret_is_read_from_the_deployment() {
        let with = |extra: &[&str], env: &[(&str, &str)]| {
            let mut d = manifest();
            if let Some(c) = first_container(&mut d) {
                if let Some(args) = c.args.as_mut() {
                    args.extend(extra.iter().map(|a| (*a).to_owned()));
                }
                c.env
                    .get_or_insert_with(Vec::new)
                    .extend(env.iter().map(|(n, v)| k8s_openapi::api::core::v1::EnvVar {
                        name: (*n).to_owned(),
                        value: Some((*v).to_owned()),
                        ..Default::default()
                    }));
            }
            serve_settings(Some(&d), crate::serve::flags_in).certificate_secret
        };
        assert_eq!(with(&[], &[]), None, "files: the overlays' Secret");
        assert_eq!(
            with(&["--certificates=in-cluster"], &[]).as_deref(),
            Some("persistence-webhook-certificates"),
            "serve's default name"
        );
        assert_eq!(
            with(
                &[
                    "--certificates",
                    "in-cluster",
                    "--certificate-secret=team-certs"
                ],
                &[]
            )
            .as_deref(),
            Some("team-certs")
        );
        assert_eq!(
            with(&[], &[("PERSISTENCE_WEBHOOK_CERTIFICATES", "in-cluster")]).as_deref(),
            Some("persistence-webhook-certificates"),
            "from the container's env, as serve takes it"
        );
        assert_eq!(
            with(&["--certificate-secret=team-certs"], &[]),
            None,
            "a name without the in-cluster mode is not the serving Secret"
        );
    }

    #[test]
    fn readiness_decides_the_deployment_check() {
        let svc = Target::Service {
            namespace: "pw".into(),
            name: "pw".into(),
            port: 443,
        };
        let cases = [
            (Some(2), Status::Passed, Some(true), "2/2 ready"),
            (Some(1), Status::Warning, Some(true), "1 of 2"),
            (None, Status::Failed, Some(false), "0 of 2"),
        ];
        for (ready, status, flag, fragment) in cases {
            let (c, ok) = deployment(&Lookup::Found(with_ready(ready)), "pw", "pw", Some(&svc));
            assert_eq!((c.result, ok), (status, flag), "{ready:?}: {c:#?}");
            assert!(c.detail.contains(fragment), "{c:#?}");
        }
        let (c, ok) = deployment(&Lookup::Missing, "pw", "pw", Some(&svc));
        assert_eq!((c.result, ok), (Status::Failed, None));
        let url = Target::Url("https://127.0.0.1:1/mutate".into());
        let (c, _) = deployment(&Lookup::Missing, "pw", "pw", Some(&url));
        assert_eq!(c.result, Status::Warning, "by URL it may run elsewhere");
        let mut one = with_ready(Some(1));
        one.spec = Some(DeploymentSpec {
            replicas: Some(1),
            ..one.spec.clone().unwrap_or_default()
        });
        assert!(deployment(&Lookup::Found(one), "pw", "pw", None).0.passed());
        // Scaled to zero: said so, with the command that scales it back,
        // not "0 of 0 ready" and the logs of pods that do not exist.
        let mut zero = with_ready(None);
        zero.spec = Some(DeploymentSpec {
            replicas: Some(0),
            ..zero.spec.clone().unwrap_or_default()
        });
        let (c, ok) = deployment(&Lookup::Found(zero), "pw", "web", Some(&svc));
        assert_eq!((c.result, ok), (Status::Failed, Some(false)));
        assert!(c.detail.starts_with("scaled to zero"), "{c:#?}");
        assert!(!c.detail.contains("0 of 0"), "{c:#?}");
        let hint = c.hint.as_deref().unwrap_or_default();
        assert!(
            hint.contains("kubectl -n pw scale deployment web --replicas="),
            "{c:#?}"
        );
        assert!(!hint.contains("logs"), "{c:#?}");
    }

    #[test]
    fn endpoints_need_a_ready_address_on_the_named_port() {
        let svc: Service =
            serde_yaml::from_str(include_str!("../../../manifests/base/service.yaml"))
                .expect("svc");
        let target = Target::Service {
            namespace: "persistence-webhook".into(),
            name: "persistence-webhook".into(),
            port: 443,
        };
        let addr = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let eps = |ready: Vec<EndpointAddress>, not_ready: Vec<EndpointAddress>| Endpoints {
            subsets: Some(vec![EndpointSubset {
                addresses: Some(ready),
                not_ready_addresses: Some(not_ready),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let found = Lookup::Found(svc.clone());
        let (c, ok) = endpoints(
            Some(&target),
            &found,
            &Lookup::Found(eps(vec![addr("10.0.0.7")], vec![])),
        );
        assert_eq!((c.result, ok), (Status::Passed, Some(true)), "{c:#?}");
        let (c, ok) = endpoints(
            Some(&target),
            &found,
            &Lookup::Found(eps(vec![], vec![addr("10.0.0.7")])),
        );
        assert_eq!((c.result, ok), (Status::Failed, Some(false)));
        assert!(c.detail.contains("1 not ready"), "{c:#?}");
        let (c, _) = endpoints(Some(&target), &found, &Lookup::Missing);
        assert_eq!(c.result, Status::Failed);
        let (c, _) = endpoints(Some(&target), &Lookup::Missing, &Lookup::Missing);
        assert!(c.detail.contains("does not exist"));
        let other_port = Target::Service {
            namespace: "persistence-webhook".into(),
            name: "persistence-webhook".into(),
            port: 8443,
        };
        let (c, _) = endpoints(
            Some(&other_port),
            &found,
            &Lookup::Found(eps(vec![addr("10.0.0.7")], vec![])),
        );
        assert!(c.detail.contains("no port 8443"), "{c:#?}");
        let url = Target::Url("https://127.0.0.1:1/mutate".into());
        let (c, ok) = endpoints(Some(&url), &Lookup::Missing, &Lookup::Missing);
        assert_eq!((c.result, ok), (Status::Skipped, None));
    }
}
