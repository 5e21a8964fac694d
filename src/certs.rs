//! A CA and a serving certificate for the webhook Service, made with rcgen:
//! ECDSA P-256 keys (a P-256 handshake costs about half an RSA-2048 one, and
//! the API server never resumes TLS sessions). Used by `certs`, by the
//! server's demo mode and by the in-cluster certificates. The rooms:
//! `issue` (a new CA and the serving certificate it signs: [`issue`],
//! [`issue_ca`]), `renew` (a new serving certificate from a kept CA:
//! [`renew`]), [`credentials`] (a PEM pair read back and checked for
//! serving), `args` and `command` (the `certs` command: its flags and
//! [`run`], which writes the files) and `pair` (writing them so that a
//! reader never sees a key beside another certificate). Issuing takes the
//! clock as an argument and writes nothing.

mod args;
mod command;
pub mod credentials;
mod issue;
mod pair;
mod renew;

pub use args::CertsArgs;
pub use command::{ca_bundle_patch, run, Written};
pub use issue::{issue, issue_ca, CertRequest, Issued};
pub use renew::{renew, Capped, RenewError, Renewed};

/// The webhook configuration's `caBundle`: the CA certificate PEM, base64.
pub fn ca_bundle(ca_cert_pem: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(ca_cert_pem)
}

/// `2026-11-23T07:17:49Z`. Written out by hand: humantime's formatter panics
/// before 1970 and after 9999, and a certificate may say either.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_even_far_from_now() {
        let cases = [
            (time::OffsetDateTime::UNIX_EPOCH, "1970-01-01T00:00:00Z"),
            (
                time::OffsetDateTime::UNIX_EPOCH - time::Duration::days(1),
                "1969-12-31T00:00:00Z",
            ),
            (
                time::OffsetDateTime::from_unix_timestamp(253_402_300_799).expect("9999"),
                "9999-12-31T23:59:59Z",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(rfc3339(t), want);
        }
    }
}
