//! The caBundle of the webhook's own MutatingWebhookConfiguration: read, and
//! when any entry's differs from the Secret's, written into every entry by
//! server-side apply under our field manager, forced, so that whatever wrote
//! another value (a GitOps sync, a hand edit) loses the field back to us.
//! Only `webhooks[*].clientConfig.caBundle` is ours: the list merges by the
//! webhooks' names, so rules, selectors and the rest stay whoever's they are.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use super::FIELD_MANAGER;

/// How a sync ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// Every entry already carried the bundle.
    InPlace,
    /// These entries carried something else and were written.
    Written(Vec<String>),
    /// The configuration does not exist (not installed yet, or deleted).
    Missing,
}

/// The MutatingWebhookConfiguration `name`.
#[derive(Debug, Clone)]
pub struct WebhookConfiguration {
    api: Api<MutatingWebhookConfiguration>,
    name: String,
}

impl WebhookConfiguration {
    /// The configuration `name` (cluster-scoped).
    pub fn new(api: Api<MutatingWebhookConfiguration>, name: String) -> WebhookConfiguration {
        WebhookConfiguration { api, name }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes every entry's caBundle `bundle_pem` (the PEM; the API carries
    /// it base64-encoded).
    pub async fn sync(&self, bundle_pem: &str) -> Result<Synced, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            return Ok(Synced::Missing);
        };
        let webhooks = current.webhooks.unwrap_or_default();
        let stale: Vec<String> = webhooks
            .iter()
            .filter(|w| {
                w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice())
                    != Some(bundle_pem.as_bytes())
            })
            .map(|w| w.name.clone())
            .collect();
        if stale.is_empty() {
            return Ok(Synced::InPlace);
        }
        let patch = apply_body(
            &self.name,
            webhooks.iter().map(|w| w.name.as_str()),
            bundle_pem,
        );
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&self.name, &pp, &Patch::Apply(patch))
            .await?;
        Ok(Synced::Written(stale))
    }
}

/// The apply configuration: each named entry with only its caBundle.
pub fn apply_body<'a>(
    name: &str,
    webhooks: impl Iterator<Item = &'a str>,
    bundle_pem: &str,
) -> serde_json::Value {
    let encoded = crate::certs::ca_bundle(bundle_pem);
    let entries: Vec<_> = webhooks
        .map(|w| json!({"name": w, "clientConfig": {"caBundle": encoded}}))
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apply_body_names_every_entry_and_only_its_ca_bundle() {
        let body = apply_body("pw", ["a.example", "b.example"].into_iter(), "PEM\n");
        assert_eq!(
            body,
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "pw"},
                "webhooks": [
                    {"name": "a.example", "clientConfig": {"caBundle": "UEVNCg=="}},
                    {"name": "b.example", "clientConfig": {"caBundle": "UEVNCg=="}},
                ],
            })
        );
    }
}
