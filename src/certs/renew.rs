//! Renewing: a new serving certificate from a CA kept on disk, so the
//! caBundle that trusts it stays valid; never from a CA outside its
//! validity, and never outliving it.

use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair};

use super::issue::{serving, CertRequest, Issued};
use super::rfc3339;

/// Why [`renew`] issued nothing.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The CA's certificate or key could not be read or used.
    #[error("not a usable CA: {0}")]
    Ca(#[source] rcgen::Error),
    /// The CA's notAfter has passed: anything it signs is refused.
    #[error("the CA expired at {not_after} (now {now}): a certificate it signs would be refused. Run `certs --force` for a new CA, then update every caBundle that trusts the old one")]
    CaExpired {
        /// The CA's notAfter, RFC 3339.
        not_after: String,
        /// The time of the check, RFC 3339.
        now: String,
    },
    /// The CA's notBefore has not come yet.
    #[error("the CA is not valid before {not_before} (now {now}): check this host's clock, or run `certs --force` for a new CA, then update every caBundle that trusts the old one")]
    CaNotYetValid {
        /// The CA's notBefore, RFC 3339.
        not_before: String,
        /// The time of the check, RFC 3339.
        now: String,
    },
    /// Signing failed.
    #[error("cannot issue the serving certificate: {0}")]
    Issue(#[source] rcgen::Error),
}

/// A renewal: the certificates, and whether the CA's expiry cut it short.
#[derive(Debug, Clone)]
pub struct Renewed {
    /// The kept CA and the new serving certificate.
    pub issued: Issued,
    /// Set when the serving certificate ends with the CA, before `--validity`.
    pub capped: Option<Capped>,
}

/// A serving certificate cut short by its CA's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    /// The validity asked for.
    pub asked: Duration,
    /// The validity given: up to the CA's notAfter.
    pub granted: Duration,
    /// The CA's notAfter, RFC 3339.
    pub ca_not_after: String,
}

/// Below this, a capped certificate is "much shorter" whatever was asked:
/// less than a week leaves little time to notice and rotate.
const SHORT: Duration = Duration::from_secs(7 * 86400);

impl Capped {
    /// Under half the validity asked, or under a week: the CA needs
    /// replacing soon, which changes the caBundle.
    pub fn much_shorter(&self) -> bool {
        self.granted < self.asked / 2 || self.granted < SHORT
    }
}

impl std::fmt::Display for Capped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (granted, asked) = (days(self.granted), days(self.asked));
        if self.much_shorter() {
            write!(
                f,
                "warning: the new serving certificate is valid for only {granted} of the {asked} asked (--validity): it cannot outlive the CA, which expires at {}. Run `certs --force` soon for a new CA, then update every caBundle that trusts the old one",
                self.ca_not_after
            )
        } else {
            write!(
                f,
                "note: the new serving certificate is valid for {granted} of the {asked} asked (--validity): it ends with the CA, at {}",
                self.ca_not_after
            )
        }
    }
}

/// `d` in days (or hours, under a day), to one decimal.
fn days(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if d >= Duration::from_secs(86400) {
        format!("{:.1} days", secs / 86400.0)
    } else {
        format!("{:.1} hours", secs / 3600.0)
    }
}

/// Issues a new serving certificate from an existing CA (PEM certificate and
/// key), so the caBundle that trusts it stays valid. Refuses a CA that is not
/// valid at `now`; caps the certificate at the CA's notAfter.
pub fn renew(
    req: &CertRequest,
    now: SystemTime,
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> Result<Renewed, RenewError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(RenewError::Ca)?;
    // Rebuilt from the CA's own fields and key: the issuer name and key
    // identifier in the new certificate are those of the CA on disk.
    let ca_params = CertificateParams::from_ca_cert_pem(ca_cert_pem).map_err(RenewError::Ca)?;
    let (ca_not_before, ca_not_after) = (ca_params.not_before, ca_params.not_after);
    let at = time::OffsetDateTime::from(now);
    // Signing under a CA outside its validity only writes a certificate
    // every client refuses (and exits 0, as if rotation had worked).
    if at > ca_not_after {
        return Err(RenewError::CaExpired {
            not_after: rfc3339(ca_not_after),
            now: rfc3339(at),
        });
    }
    if at < ca_not_before {
        return Err(RenewError::CaNotYetValid {
            not_before: rfc3339(ca_not_before),
            now: rfc3339(at),
        });
    }
    let ca_cert = ca_params.self_signed(&ca_key).map_err(RenewError::Ca)?;
    // A serving certificate must not outlive the CA that vouches for it.
    let mut capped = req.clone();
    let mut cut = None;
    if time::OffsetDateTime::from(now + req.validity) > ca_not_after {
        let left = (ca_not_after - at).whole_seconds().max(0);
        capped.validity = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        cut = Some(Capped {
            asked: req.validity,
            granted: capped.validity,
            ca_not_after: rfc3339(ca_not_after),
        });
    }
    let (cert_pem, key_pem) =
        serving(&capped, now, ca_not_before, &ca_cert, &ca_key).map_err(RenewError::Issue)?;
    Ok(Renewed {
        issued: Issued {
            ca_cert_pem: ca_cert_pem.to_owned(),
            ca_key_pem: ca_key_pem.to_owned(),
            cert_pem,
            key_pem,
        },
        capped: cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::issue;

    fn request(validity_days: u64) -> CertRequest {
        CertRequest {
            service: "pw".into(),
            namespace: "sys".into(),
            dns: vec![],
            ips: vec![],
            validity: Duration::from_secs(validity_days * 86400),
        }
    }

    #[test]
    fn renew_refuses_a_ca_outside_its_validity() {
        const DAY: Duration = Duration::from_secs(86400);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        // Valid one day from 2026-11-21T11:55:00Z; then one from 2026-11-25.
        let expired = issue(&request(1), now - 2 * DAY).expect("CA");
        let future = issue(&request(1), now + 2 * DAY).expect("CA");
        let cases = [
            (
                &expired,
                "the CA expired at 2026-11-22T12:00:00Z (now 2026-11-23T12:00:00Z)",
            ),
            (
                &future,
                "the CA is not valid before 2026-11-25T11:55:00Z (now 2026-11-23T12:00:00Z)",
            ),
        ];
        for (ca, want) in cases {
            let err = renew(&request(30), now, &ca.ca_cert_pem, &ca.ca_key_pem)
                .expect_err(want)
                .to_string();
            assert!(err.contains(want), "{err}");
            assert!(err.contains("`certs --force`"), "{err}");
        }
    }

    /// A renewal right after the CA was made would backdate the serving
    /// certificate (five minutes, or a tenth of its validity) to before the
    /// CA's own notBefore: the chain would then have a moment in which the
    /// leaf is valid and its issuer is not. The leaf starts with its CA.
    #[test]
    fn a_renewed_certificate_never_starts_before_its_ca() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_435_200);
        // The CA is backdated by 5 minutes from `now`; renewing 1 minute
        // later would backdate the leaf to 4 minutes before the CA.
        let ca = issue(&request(30), now).expect("CA");
        let ca_start = CertificateParams::from_ca_cert_pem(&ca.ca_cert_pem)
            .expect("the CA parses")
            .not_before;
        for later in [0, 60, 299, 301, 3600] {
            let at = now + Duration::from_secs(later);
            let renewed =
                renew(&request(30), at, &ca.ca_cert_pem, &ca.ca_key_pem).expect("renewed");
            let (_, leaf) =
                x509_parser::pem::parse_x509_pem(renewed.issued.cert_pem.as_bytes()).expect("PEM");
            let leaf = leaf.parse_x509().expect("X.509");
            let start = leaf.validity().not_before.timestamp();
            assert!(
                start >= ca_start.unix_timestamp(),
                "{later} s after the CA: the leaf starts at {start}, the CA at {}",
                ca_start.unix_timestamp()
            );
            let backdated = time::OffsetDateTime::from(at - Duration::from_secs(300));
            assert_eq!(
                start,
                backdated.max(ca_start).unix_timestamp(),
                "{later} s after the CA: backdated five minutes, but not before the CA"
            );
        }
    }

    #[test]
    fn renew_under_a_ca_ending_soon_says_how_short_the_certificate_is() {
        let now = SystemTime::now();
        let ca = issue(&request(10), now).expect("CA");
        // (asked, capped?, much shorter?)
        let cases = [(5, false, false), (15, true, false), (30, true, true)];
        for (asked, capped, much) in cases {
            let renewed =
                renew(&request(asked), now, &ca.ca_cert_pem, &ca.ca_key_pem).expect("renewed");
            assert_eq!(renewed.capped.is_some(), capped, "{asked} days");
            if let Some(cut) = renewed.capped {
                assert_eq!(cut.much_shorter(), much, "{asked} days: {cut}");
                let text = cut.to_string();
                let want = if much { "warning: " } else { "note: " };
                assert!(text.starts_with(want), "{text}");
                assert!(
                    text.contains(&format!("of the {asked}.0 days asked")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn much_shorter_is_under_half_or_under_a_week() {
        const DAY: u64 = 86400;
        let cut = |asked: u64, granted: u64| Capped {
            asked: Duration::from_secs(asked * DAY),
            granted: Duration::from_secs(granted * DAY),
            ca_not_after: String::new(),
        };
        let cases = [
            (365, 300, false, "most of a year"),
            (365, 180, true, "under half"),
            (10, 6, true, "under a week though over half"),
            (10, 7, false, "a week, over half"),
        ];
        for (asked, granted, want, why) in cases {
            assert_eq!(cut(asked, granted).much_shorter(), want, "{why}");
        }
    }
}
