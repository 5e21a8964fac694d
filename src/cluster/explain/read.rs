//! The reads of live `explain`: the pod, its namespace's labels and the
//! MutatingWebhookConfiguration, each error naming the object and what
//! RBAC would allow it.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _, Result};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::Value;

use super::route::PolicyInstalled;

/// The pod, its namespace's labels and the webhook configuration (`None`
/// when it does not exist).
pub(super) type Read = (
    Value,
    BTreeMap<String, String>,
    Option<MutatingWebhookConfiguration>,
);

/// Reads the pod `namespace/name`, its namespace and the webhook
/// configuration `webhook_name`.
pub(super) async fn read(
    client: &kube::Client,
    webhook_name: &str,
    namespace: &str,
    name: &str,
) -> Result<Read> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Pod"), "pods");
    let pods: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let pod = match pods.get_opt(name).await {
        Ok(Some(pod)) => pod,
        Ok(None) => {
            return Err(anyhow!(
                "pod {namespace}/{name} not found (kubectl -n {namespace} get pod {name})"
            ))
        }
        Err(e) => return Err(api_error(e, &format!("pod {namespace}/{name}"))),
    };
    let pod = serde_json::to_value(pod).context("re-encoding the pod")?;
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .map_err(|e| api_error(e, &format!("namespace {namespace}")))?;
    let labels = ns
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let configuration = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get_opt(webhook_name)
        .await
        .map_err(|e| api_error(e, &format!("MutatingWebhookConfiguration {webhook_name}")))?;
    Ok((pod, labels, configuration))
}

/// The MutatingAdmissionPolicy `name` and whether its binding binds it;
/// `Ok(None)` when it does not exist (or the API server does not serve the
/// kind). `Err` says what could not be read and why: `explain` then works
/// out the path as if no policy were installed, and says so (the policies
/// are optional, and so is the permission to read them).
pub(super) async fn policy(
    client: &kube::Client,
    name: &str,
) -> Result<Option<PolicyInstalled>, String> {
    let get = |kind: &'static str, plural: &'static str| {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
            plural,
        );
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        async move {
            match api.get_opt(name).await {
                Ok(found) => Ok(found.and_then(|o| serde_json::to_value(o).ok())),
                Err(e) => Err(format!(
                    "cannot read {kind} {name}: {} (explain needs get on {plural} to tell a hybrid install's path)",
                    match e {
                        kube::Error::Api(r) => format!("{} ({})", r.message, r.reason),
                        other => other.to_string(),
                    }
                )),
            }
        }
    };
    let (policy, binding) = tokio::join!(
        get("MutatingAdmissionPolicy", "mutatingadmissionpolicies"),
        get(
            "MutatingAdmissionPolicyBinding",
            "mutatingadmissionpolicybindings"
        ),
    );
    let Some(policy) = policy? else {
        return Ok(None);
    };
    Ok(Some(PolicyInstalled::from_objects(
        &policy,
        binding?.as_ref(),
    )))
}

/// An API error, naming the object and saying what kind of failure it is.
fn api_error(e: kube::Error, what: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(r) if r.code == 403 => anyhow!(
            "forbidden to read {what}: {} (explain needs get on pods, namespaces and mutatingwebhookconfigurations)",
            r.message
        ),
        kube::Error::Api(r) => anyhow!("reading {what}: {} ({})", r.message, r.reason),
        other => anyhow!(
            "cannot reach the API server to read {what}: {:#}",
            anyhow::Error::from(other)
        ),
    }
}
