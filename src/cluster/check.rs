//! `persistence-webhook check`: a health report of a live install (SPEC §9),
//! like `linkerd check`. Each group of checks judges objects read from the
//! API server; the judging is pure and lives in one room per concept, the
//! reading in `gather`:
//!
//! - `webhook`: the MutatingWebhookConfiguration's fields;
//! - `certificates`: caBundle, serving Secret, chain, names, expiry;
//! - `workload`: Deployment readiness, Service endpoints, `serve`'s flags;
//! - `config_map`: the persistence config, through `serve`'s validator;
//! - `policies`: in a hybrid install, the admission policies and bindings
//!   against what `policy --hybrid` generates from the installed config;
//! - `namespace`: per opted-in namespace, the Secrets (key names only) and
//!   claims its stores reference; `probe`: a server-side dry-run pod
//!   patched exactly as the core's `review` predicts;
//! - `report`: the lines, the JSON and the exit status.
//!
//! It never writes: the probe pods are dry runs, stored nowhere. It reads
//! Secrets' key names only (see [`objects`]).

use clap::{Args, ValueEnum};

use super::ClusterArgs;

mod certificates;
pub(crate) mod config_map;
mod gather;
mod namespace;
pub mod objects;
mod policies;
mod probe;
pub mod report;
pub(crate) mod webhook;
mod workload;

pub use report::{Check, Report, Status};
pub use workload::{ServeFlags, ServeParser};

/// The serving Secret of an install whose certificate is in files
/// (`--tls-cert`, `--tls-key`): the self-managed and cert-manager overlays
/// name it so, and the Deployment mounts it.
pub const FILES_TLS_SECRET: &str = "persistence-webhook-tls";

/// Flags of `check`. The defaults are the names in `manifests/base`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// How to reach the API server.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The namespace the webhook runs in (its Deployment, Service, serving
    /// Secret and ConfigMap).
    #[arg(long, value_name = "NS", default_value = "persistence-webhook")]
    pub webhook_namespace: String,

    /// The name of the MutatingWebhookConfiguration, the Deployment and
    /// the Service.
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook")]
    pub webhook_name: String,

    /// The name of the admission policies and their bindings of a hybrid
    /// install (`policy --name`).
    #[arg(long, value_name = "NAME", default_value = "persistence-webhook")]
    pub policy_name: String,

    /// The Secret holding the serving certificate (`tls.crt`) [default: the
    /// Deployment's `--certificate-secret` when it runs `serve
    /// --certificates in-cluster`, else persistence-webhook-tls, as the
    /// self-managed and cert-manager overlays name it].
    #[arg(long, value_name = "NAME")]
    pub tls_secret: Option<String>,

    /// The ConfigMap holding the persistence config.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "persistence-webhook-config"
    )]
    pub config_map: String,

    /// The ConfigMap's key holding the persistence config.
    #[arg(long, value_name = "KEY", default_value = "persistence.yaml")]
    pub config_key: String,

    /// Check only these namespaces (repeatable), labelled or not; default:
    /// every namespace with the webhook configuration's opt-in label (its
    /// namespaceSelector's matchLabels: polyaxon.com/persistence-injection=enabled
    /// in the manifests, the chart's webhook.optInLabel).
    #[arg(long = "namespace", short = 'n', value_name = "NS")]
    pub namespaces: Vec<String>,

    /// The image of the dry-run probe pods (never pulled); change it if an
    /// admission policy allows only your registries.
    #[arg(long, value_name = "IMAGE", default_value = probe::DEFAULT_IMAGE)]
    pub probe_image: String,

    /// Namespaces checked at once.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Deadline of each API request (a dry run waits for the webhook, up to
    /// its timeoutSeconds); 1ms to 1h.
    #[arg(long, value_name = "DURATION", default_value = "35s",
          value_parser = crate::flags::duration_in::<1, 3_600_000>)]
    pub timeout: humantime::Duration,

    /// Text for people, or JSON (the same content) for tools.
    #[arg(long, short = 'o', value_enum, default_value_t = CheckOutput::Text)]
    pub output: CheckOutput,
}

/// `check --output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// Grouped lines with hints and a summary.
    Text,
    /// `{success, summary, groups: [{name, checks: [...]}]}`.
    Json,
}

/// Runs the checks. An error means no report could be made at all (no
/// kubeconfig, the API server unreachable): exit status 2; with a report,
/// 0 when nothing failed ([`Report::success`]), else 1.
///
/// `parse` is `serve`'s own parser, for the flags in the Deployment's args
/// (handed in by the command layer: `crate::serve::flags_in`).
pub async fn run(args: &CheckArgs, parse: ServeParser) -> anyhow::Result<Report> {
    let client = super::client(&args.cluster, *args.timeout).await?;
    gather::report(client, args, std::time::SystemTime::now(), parse).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_yaml::Value;

    fn yaml(path: &str) -> Vec<Value> {
        let full = format!("{}/manifests/{path}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        text.split("\n---\n")
            .map(|d| serde_yaml::from_str(d).unwrap_or_else(|e| panic!("{full}: {e}")))
            .collect()
    }

    fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
        let mut at = v;
        for key in path {
            at = match key.parse::<usize>() {
                Ok(i) => &at[i],
                Err(_) => &at[*key],
            };
        }
        at.as_str().unwrap_or_else(|| panic!("{path:?} in {v:?}"))
    }

    /// `--timeout` is a human duration above zero; the message names the
    /// range and gives examples.
    #[test]
    fn timeout_is_a_bounded_human_duration() {
        let parse = |t: &str| {
            crate::cli::Cli::try_parse_from(["persistence-webhook", "check", "--timeout", t])
                .map_err(|e| e.to_string())
        };
        let Ok(crate::cli::Cli {
            command: crate::cli::Command::Check(args),
            ..
        }) = parse("1m")
        else {
            panic!("1m parses");
        };
        assert_eq!(*args.timeout, std::time::Duration::from_secs(60));
        let zero = parse("0s").err().unwrap_or_default();
        assert!(zero.contains("must be between 1ms and 1h"), "{zero}");
        let word = parse("soon").err().unwrap_or_default();
        assert!(word.contains("examples: 500ms, 10s, 2m"), "{word}");
    }

    /// The flags' defaults are the manifests' names, and the ClusterRole
    /// names the same objects: renaming one without the others fails here.
    #[test]
    fn defaults_are_the_manifests_names() {
        let cli =
            crate::cli::Cli::try_parse_from(["persistence-webhook", "check"]).expect("parses");
        let crate::cli::Command::Check(args) = cli.command else {
            panic!("not check");
        };
        let kustomization = &yaml("base/kustomization.yaml")[0];
        assert_eq!(
            args.webhook_namespace,
            str_at(kustomization, &["namespace"])
        );
        let generator = &kustomization["configMapGenerator"][0];
        assert_eq!(args.config_map, str_at(generator, &["name"]));
        assert_eq!(args.config_key, str_at(generator, &["files", "0"]));
        for file in [
            "base/mutatingwebhookconfiguration.yaml",
            "base/deployment.yaml",
            "base/service.yaml",
        ] {
            assert_eq!(
                args.webhook_name,
                str_at(&yaml(file)[0], &["metadata", "name"]),
                "{file}"
            );
        }
        let hook = &yaml("base/mutatingwebhookconfiguration.yaml")[0]["webhooks"][0];
        assert_eq!(str_at(hook, &["name"]), crate::vocabulary::WEBHOOK_ENTRY);
        let self_managed = &yaml("overlays/self-managed/kustomization.yaml")[0];
        assert_eq!(
            super::FILES_TLS_SECRET,
            str_at(self_managed, &["secretGenerator", "0", "name"])
        );
        let certificate = &yaml("overlays/cert-manager/certificate.yaml")[0];
        assert_eq!(
            super::FILES_TLS_SECRET,
            str_at(certificate, &["spec", "secretName"])
        );
        let deployment = &yaml("base/deployment.yaml")[0];
        let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
        let mounted: Vec<&str> = volumes
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v["configMap"]["name"]
                    .as_str()
                    .or(v["secret"]["secretName"].as_str())
            })
            .collect();
        assert_eq!(mounted, [args.config_map.as_str(), super::FILES_TLS_SECRET]);

        let role = &yaml("check/clusterrole.yaml")[0];
        let named = |resource: &str| -> Vec<String> {
            role["rules"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["resources"]
                        .as_sequence()
                        .is_some_and(|s| s.iter().any(|x| x == resource))
                })
                .flat_map(|r| {
                    r["resourceNames"]
                        .as_sequence()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        };
        for resource in [
            "mutatingwebhookconfigurations",
            "deployments",
            "services",
            "endpoints",
        ] {
            assert_eq!(named(resource), [args.webhook_name.as_str()], "{resource}");
        }
        assert_eq!(named("configmaps"), [args.config_map.as_str()]);
        for resource in crate::cluster::check::policies::KINDS.map(|(_, plural)| plural) {
            assert_eq!(named(resource), [args.policy_name.as_str()], "{resource}");
        }
        let binding = &yaml("check/clusterrolebinding.yaml")[0];
        let sa = &yaml("check/serviceaccount.yaml")[0];
        assert_eq!(
            str_at(binding, &["subjects", "0", "name"]),
            str_at(sa, &["metadata", "name"])
        );
        assert_eq!(
            str_at(binding, &["subjects", "0", "namespace"]),
            args.webhook_namespace
        );
        assert_eq!(
            str_at(binding, &["roleRef", "name"]),
            str_at(role, &["metadata", "name"])
        );
    }
}
