//! Verdicts on the MutatingWebhookConfiguration (the "webhook
//! configuration" group): that it exists and that its rules, selectors,
//! `sideEffects`, `failurePolicy`, `timeoutSeconds`, `reinvocationPolicy`,
//! `matchConditions` and `clientConfig` are the ones the webhook needs. Pure: it judges a
//! built object and returns what the later groups need from it.

use std::time::Duration;

use super::objects::{
    LabelSelector, MatchCondition, MutatingWebhook, MutatingWebhookConfiguration,
};
use super::report::Check;
use crate::cluster::registration::match_conditions::{always_false, reads_dry_run};
use crate::cluster::registration::selector::{labels, selects};
use crate::cluster::registration::{entry, sends_pod_create};
use crate::vocabulary::{LABEL_INJECTION, OPT_IN, OPT_OUT, WEBHOOK_ENTRY};
/// Where the manifests keep the configuration, for hints.
const MANIFEST: &str = "manifests/base/mutatingwebhookconfiguration.yaml";

/// What the install should look like.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// The MutatingWebhookConfiguration's name (`--webhook-name`).
    pub config_name: &'a str,
    /// The webhook's namespace (`--webhook-namespace`).
    pub namespace: &'a str,
    /// Its Service's name (`--webhook-name`).
    pub service: &'a str,
    /// The server's `--request-timeout`, which `timeoutSeconds` must exceed.
    pub request_timeout: Duration,
    /// Where that value came from, for the message.
    pub request_timeout_from: &'a str,
}

/// Where the API server sends the reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `clientConfig.service`.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its port (443 by default).
        port: i32,
    },
    /// `clientConfig.url`.
    Url(String),
}

impl Target {
    /// The name the API server checks the serving certificate against:
    /// `<service>.<namespace>.svc`, or the URL's host.
    pub fn server_name(&self) -> String {
        match self {
            Target::Service {
                namespace, name, ..
            } => format!("{name}.{namespace}.svc"),
            Target::Url(url) => url_host(url).to_owned(),
        }
    }
}

/// The host of an `https://host[:port]/path` URL (an IPv6 host without its
/// brackets).
pub fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

/// What the later groups need from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The caBundle, PEM, if any.
    pub ca_bundle: Option<Vec<u8>>,
    /// Where reviews go.
    pub target: Target,
    /// Which namespaces are sent.
    pub namespace_selector: Option<LabelSelector>,
    /// Whether its rules send a pod CREATE at all (else no probe can tell
    /// anything: the API server never calls the webhook).
    pub sends_pod_create: bool,
    /// The entry's `matchConditions`, in order (the probe names the one
    /// that kept it from the webhook).
    pub match_conditions: Vec<MatchCondition>,
}

/// Judges the configuration (`None`: not found).
pub fn judge(
    config: Option<&MutatingWebhookConfiguration>,
    expect: &Expect<'_>,
) -> (Vec<Check>, Option<Registration>) {
    let title = format!("MutatingWebhookConfiguration {} exists", expect.config_name);
    let Some(config) = config else {
        let checks = vec![Check::fail(
            "webhook-exists",
            title,
            "not found: the API server calls no webhook, so no pod gets its stores",
            "install it: kubectl apply -k manifests/overlays/self-managed (or overlays/cert-manager); \
             or name yours with --webhook-name",
        )];
        return (checks, None);
    };
    let entries = config.webhooks.as_deref().unwrap_or_default();
    let Some(hook) = entry(config) else {
        let names: Vec<&str> = entries.iter().map(|w| w.name.as_str()).collect();
        let checks = vec![Check::fail(
            "webhook-exists",
            title,
            format!(
                "it has no webhook named {WEBHOOK_ENTRY} (it has: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            format!("restore the webhooks list from {MANIFEST}"),
        )];
        return (checks, None);
    };
    let mut checks = vec![Check::pass(
        "webhook-exists",
        title,
        format!("webhook {}", hook.name),
    )];
    checks.push(rules(hook));
    checks.push(namespace_selector(hook));
    checks.push(object_selector(hook));
    checks.push(match_conditions(hook));
    checks.push(side_effects(hook));
    checks.push(failure_policy(hook));
    checks.push(timeout(hook, expect));
    checks.push(reinvocation(hook));
    checks.push(review_versions(hook));
    let (check, target) = client_config(hook, expect);
    checks.push(check);
    let registration = target.map(|target| Registration {
        ca_bundle: hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .filter(|b| !b.is_empty()),
        target,
        namespace_selector: hook.namespace_selector.clone(),
        sends_pod_create: sends_pod_create(hook),
        match_conditions: hook.match_conditions.clone().unwrap_or_default(),
    });
    (checks, registration)
}

fn rules(hook: &MutatingWebhook) -> Check {
    const TITLE: &str = "rules send pod CREATE (v1)";
    let rules = hook.rules.as_deref().unwrap_or_default();
    if !sends_pod_create(hook) {
        return Check::fail(
            "webhook-rules",
            TITLE,
            "no rule matches CREATE of pods (apiGroups \"\", apiVersions v1): the webhook is never called for new pods",
            format!(
                "set rules to [{{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [pods], scope: Namespaced}}] as in {MANIFEST}"
            ),
        );
    }
    let extra: Vec<String> = rules
        .iter()
        .flat_map(|r| {
            let ops = r.operations.iter().flatten().filter(|o| *o != "CREATE");
            let res = r.resources.iter().flatten().filter(|x| *x != "pods");
            ops.chain(res).cloned().collect::<Vec<_>>()
        })
        .collect();
    if extra.is_empty() {
        Check::pass("webhook-rules", TITLE, "CREATE pods")
    } else {
        Check::warn(
            "webhook-rules",
            TITLE,
            format!(
                "also sends {}: the webhook lets them through unchanged, but each is a call that can fail or time out",
                extra.join(", ")
            ),
            format!("keep only CREATE of pods in rules ({MANIFEST})"),
        )
    }
}

fn namespace_selector(hook: &MutatingWebhook) -> Check {
    const TITLE: &str = "namespaceSelector sends only opted-in namespaces";
    let sel = hook.namespace_selector.as_ref();
    let opted_in = labels([
        (LABEL_INJECTION, OPT_IN),
        ("kubernetes.io/metadata.name", "team"),
    ]);
    let unlabelled = labels([("kubernetes.io/metadata.name", "kube-system")]);
    let hint = format!(
        "set namespaceSelector to require {LABEL_INJECTION} In [{OPT_IN}] (and exclude kube-system), as in {MANIFEST}"
    );
    if !selects(sel, &opted_in) {
        return Check::fail(
            "webhook-namespace-selector",
            TITLE,
            format!(
                "it does not select a namespace labelled {LABEL_INJECTION}={OPT_IN}: opted-in namespaces get nothing"
            ),
            hint,
        );
    }
    if selects(sel, &unlabelled) {
        let detail = format!(
            "it also selects namespaces without {LABEL_INJECTION}={OPT_IN} (kube-system among them): an outage of the webhook blocks their pods"
        );
        return if hook.failure_policy.as_deref() == Some("Ignore") {
            Check::warn("webhook-namespace-selector", TITLE, detail, hint)
        } else {
            Check::fail("webhook-namespace-selector", TITLE, detail, hint)
        };
    }
    Check::pass(
        "webhook-namespace-selector",
        TITLE,
        format!("{LABEL_INJECTION}={OPT_IN}"),
    )
}

fn object_selector(hook: &MutatingWebhook) -> Check {
    const TITLE: &str = "objectSelector lets pods opt out";
    let sel = hook.object_selector.as_ref();
    if !selects(sel, &labels([])) {
        return Check::fail(
            "webhook-object-selector",
            TITLE,
            "it skips pods without labels: ordinary pods get nothing",
            format!(
                "set objectSelector to {LABEL_INJECTION} NotIn [{OPT_OUT}] only, as in {MANIFEST}"
            ),
        );
    }
    if selects(sel, &labels([(LABEL_INJECTION, OPT_OUT)])) {
        return Check::warn(
            "webhook-object-selector",
            TITLE,
            format!(
                "pods labelled {LABEL_INJECTION}={OPT_OUT} are still sent (the webhook skips them, but an outage blocks them too)"
            ),
            format!(
                "add objectSelector {LABEL_INJECTION} NotIn [{OPT_OUT}], as in {MANIFEST}"
            ),
        );
    }
    Check::pass(
        "webhook-object-selector",
        TITLE,
        format!("{LABEL_INJECTION}={OPT_OUT} is not sent"),
    )
}

fn match_conditions(hook: &MutatingWebhook) -> Check {
    const ID: &str = "webhook-match-conditions";
    const TITLE: &str = "matchConditions let pods through";
    let conditions = hook.match_conditions.as_deref().unwrap_or_default();
    if conditions.is_empty() {
        return Check::pass(ID, TITLE, "none: every pod the selectors send is reviewed");
    }
    let listed = conditions
        .iter()
        .map(|c| format!("{} ({})", c.name, c.expression))
        .collect::<Vec<_>>()
        .join("; ");
    let names = |pick: fn(&str) -> bool| -> Vec<&str> {
        conditions
            .iter()
            .filter(|c| pick(&c.expression))
            .map(|c| c.name.as_str())
            .collect()
    };
    let never = names(always_false);
    if !never.is_empty() {
        return Check::fail(
            ID,
            TITLE,
            format!(
                "matchCondition {} is false for every request: the API server never calls the webhook, so no pod gets its stores (conditions: {listed})",
                never.join(", ")
            ),
            format!("fix or remove it, as in {MANIFEST}"),
        );
    }
    let dry = names(reads_dry_run);
    if !dry.is_empty() {
        return Check::warn(
            ID,
            TITLE,
            format!(
                "matchCondition {} reads request.dryRun: a server dry run (kubectl create --dry-run=server, this check's probe) may get another answer than the real pod (conditions: {listed})",
                dry.join(", ")
            ),
            format!("leave request.dryRun out of matchConditions, as in {MANIFEST}: the webhook has no side effects"),
        );
    }
    Check::pass(ID, TITLE, listed)
}

fn side_effects(hook: &MutatingWebhook) -> Check {
    const TITLE: &str = "sideEffects allows dry runs";
    match hook.side_effects.as_str() {
        s @ ("None" | "NoneOnDryRun") => Check::pass("webhook-side-effects", TITLE, s),
        other => Check::fail(
            "webhook-side-effects",
            TITLE,
            format!(
                "sideEffects {other:?}: `kubectl create --dry-run=server` of a pod is refused in opted-in namespaces"
            ),
            "set sideEffects: None (the webhook has none)",
        ),
    }
}

fn failure_policy(hook: &MutatingWebhook) -> Check {
    const TITLE: &str = "failurePolicy keeps pods from starting without their stores";
    match hook.failure_policy.as_deref().unwrap_or("Fail") {
        "Fail" => Check::pass("webhook-failure-policy", TITLE, "Fail"),
        other => Check::warn(
            "webhook-failure-policy",
            TITLE,
            format!("{other}: pods created while the webhook is down start without their stores"),
            format!("set failurePolicy: Fail ({MANIFEST})"),
        ),
    }
}

fn timeout(hook: &MutatingWebhook, expect: &Expect<'_>) -> Check {
    const TITLE: &str = "timeoutSeconds is above the server's request timeout";
    let seconds = hook.timeout_seconds.unwrap_or(10);
    let limit = expect.request_timeout;
    let shown = humantime::format_duration(limit);
    if u64::try_from(seconds).is_ok_and(|s| Duration::from_secs(s) > limit) {
        Check::pass(
            "webhook-timeout",
            TITLE,
            format!(
                "{seconds}s > --request-timeout {shown} ({})",
                expect.request_timeout_from
            ),
        )
    } else {
        Check::fail(
            "webhook-timeout",
            TITLE,
            format!(
                "{seconds}s is not above --request-timeout {shown} ({}): the API server gives up first, so a slow review fails with a timeout instead of the webhook's answer",
                expect.request_timeout_from
            ),
            "raise timeoutSeconds (at most 30) above --request-timeout, or lower serve's --request-timeout in the Deployment's args",
        )
    }
}

fn reinvocation(hook: &MutatingWebhook) -> Check {
    const TITLE: &str = "reinvocationPolicy covers containers added later";
    match hook.reinvocation_policy.as_deref().unwrap_or("Never") {
        "IfNeeded" => Check::pass("webhook-reinvocation", TITLE, "IfNeeded"),
        other => Check::warn(
            "webhook-reinvocation",
            TITLE,
            format!(
                "{other}: a container that a later webhook adds (a sidecar) gets no mounts nor env"
            ),
            format!("set reinvocationPolicy: IfNeeded ({MANIFEST}); the patch is idempotent"),
        ),
    }
}

fn review_versions(hook: &MutatingWebhook) -> Check {
    const TITLE: &str = "admissionReviewVersions includes one the webhook speaks";
    let versions = &hook.admission_review_versions;
    if versions.iter().any(|v| v == "v1" || v == "v1beta1") {
        Check::pass("webhook-review-versions", TITLE, versions.join(", "))
    } else {
        Check::fail(
            "webhook-review-versions",
            TITLE,
            format!(
                "{}: the webhook speaks admission.k8s.io v1 and v1beta1",
                versions.join(", ")
            ),
            "set admissionReviewVersions: [v1]",
        )
    }
}

fn client_config(hook: &MutatingWebhook, expect: &Expect<'_>) -> (Check, Option<Target>) {
    const TITLE: &str = "clientConfig points at the webhook";
    let cc = &hook.client_config;
    if let Some(svc) = &cc.service {
        let port = svc.port.unwrap_or(443);
        let path = svc.path.as_deref().unwrap_or("/");
        let target = Target::Service {
            namespace: svc.namespace.clone(),
            name: svc.name.clone(),
            port,
        };
        let shown = format!(
            "Service {}/{} port {port} path {path}",
            svc.namespace, svc.name
        );
        let check = if path != "/mutate" {
            Check::fail(
                "webhook-client-config",
                TITLE,
                format!("{shown}: the webhook serves POST /mutate only"),
                "set clientConfig.service.path: /mutate",
            )
        } else if svc.namespace != expect.namespace || svc.name != expect.service {
            Check::warn(
                "webhook-client-config",
                TITLE,
                format!(
                    "{shown}, not {}/{}: the Service and certificate checks follow the configuration",
                    expect.namespace, expect.service
                ),
                "pass --webhook-namespace and --webhook-name of your install",
            )
        } else {
            Check::pass("webhook-client-config", TITLE, shown)
        };
        return (check, Some(target));
    }
    if let Some(url) = &cc.url {
        let check = if url
            .split(['?', '#'])
            .next()
            .is_some_and(|u| u.ends_with("/mutate"))
        {
            Check::pass(
                "webhook-client-config",
                TITLE,
                format!("URL {url} (no Service in the path: the Service checks do not apply)"),
            )
        } else {
            Check::fail(
                "webhook-client-config",
                TITLE,
                format!("URL {url}: the webhook serves POST /mutate only"),
                "end clientConfig.url with /mutate",
            )
        };
        return (check, Some(Target::Url(url.clone())));
    }
    (
        Check::fail(
            "webhook-client-config",
            TITLE,
            "neither clientConfig.service nor clientConfig.url is set",
            format!("set clientConfig.service as in {MANIFEST}"),
        ),
        None,
    )
}

#[cfg(test)]
mod tests;
