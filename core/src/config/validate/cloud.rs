//! A cloud store's fields: the bucket and its provider, the endpoint and
//! the region.

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::{Backend, Provider, Role};
use crate::names;
use crate::text::clip;

impl Validator {
    pub(super) fn cloud(
        &mut self,
        role: Role,
        at: &str,
        name: &str,
        kind: &str,
        raw: &RawStore,
    ) -> Option<Backend> {
        let before = self.problems.len();
        for (field, present) in [
            ("mountPath", raw.mount_path.is_some()),
            ("hostPath", raw.host_path.is_some()),
            ("existingClaim", raw.existing_claim.is_some()),
            ("readOnly", raw.read_only.is_some()),
        ] {
            if present {
                self.problem(format!("{at}.{field}"), format!("not allowed on a cloud store (store: {kind}); a bucket store has store, bucket, and optionally secret and secretKey"));
            }
        }
        let provider = Provider::parse(kind);
        if provider.is_none() {
            self.problem(
                format!("{at}.store"),
                format!("{kind:?} is not a store kind (expected gcs, s3 or azure)"),
            );
        }
        let bucket = self.required(at, "bucket", &raw.bucket);
        if let (Some(provider), Some(bucket)) = (provider, bucket) {
            if !provider.accepts(bucket) {
                self.problem(
                    format!("{at}.bucket"),
                    format!(
                        "{bucket:?} does not match store {} (expected {})",
                        provider.as_str(),
                        provider.scheme_hint()
                    ),
                );
            }
        }
        let endpoint = self.endpoint(at, kind, provider, raw.endpoint.as_deref());
        let region = self.region(at, kind, provider, raw.region.as_deref());
        let credentials = self.credentials(at, name, kind, provider, raw);
        if self.problems.len() != before {
            return None;
        }
        let (provider, bucket) = (provider?, bucket?);
        if role == Role::Data {
            if let Some(other) = self.data_buckets.insert(bucket.to_owned(), name.to_owned()) {
                self.problem(format!("{at}.bucket"), format!("{bucket:?} is already the bucket of data store {other:?}; a run's data paths are keyed by bucket"));
            }
        }
        Some(Backend::Cloud {
            provider,
            bucket: bucket.to_owned(),
            credentials,
            endpoint,
            region,
        })
    }

    /// `endpoint` (s3, gcs): `http(s)://host[:port]`, one trailing `/`
    /// dropped; the clients append their own paths to it.
    pub(super) fn endpoint(
        &mut self,
        at: &str,
        kind: &str,
        provider: Option<Provider>,
        endpoint: Option<&str>,
    ) -> Option<String> {
        let endpoint = endpoint?;
        let field = format!("{at}.endpoint");
        if provider == Some(Provider::Azure) {
            self.problem(field, format!("not allowed on store {kind} (only s3 and gcs take an endpoint; an Azure connection string names its own endpoint: use connectionStringKey)"));
            return None;
        }
        match names::check_endpoint(endpoint) {
            Ok(clean) => Some(clean.to_owned()),
            Err(why) => {
                self.problem(field, format!("{:?} {why}", clip(endpoint)));
                None
            }
        }
    }

    /// `region` (s3 only).
    pub(super) fn region(
        &mut self,
        at: &str,
        kind: &str,
        provider: Option<Provider>,
        region: Option<&str>,
    ) -> Option<String> {
        let region = region?;
        let field = format!("{at}.region");
        if provider.is_some_and(|p| p != Provider::S3) {
            self.problem(
                field,
                format!("not allowed on store {kind} (only s3 takes a region)"),
            );
            return None;
        }
        let ok = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            self.problem(
                field,
                format!(
                    "{:?} is not a region name (letters, digits, '-' and '_', e.g. us-east-1)",
                    clip(region)
                ),
            );
            return None;
        }
        Some(region.to_owned())
    }
}
