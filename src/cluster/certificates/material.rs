//! What the certificate Secret holds: the serving certificate, the CA that
//! signs it, and where a CA rotation stands; read from and written to the
//! Secret's `data`, and changed one rotation step at a time.
//!
//! No I/O and no clock: the time is passed in. Keys come from rcgen, so the
//! steps that issue something are random, but nothing here talks to the API.
//!
//! The caBundle is the PEM of every CA trusted at the moment, oldest first:
//! the signer alone when steady; during a rotation the old CA and the new one
//! (first while the old one still signs, then while the new one signs).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::certs::{self, CertRequest};

/// `data` keys of the Secret. `tls.crt`, `tls.key` and `ca.crt` are the
/// names cert-manager and `kubernetes.io/tls` Secrets use.
pub mod keys {
    /// The serving certificate.
    pub const TLS_CRT: &str = "tls.crt";
    /// The serving key.
    pub const TLS_KEY: &str = "tls.key";
    /// The caBundle: every CA trusted now, PEM, oldest first.
    pub const CA_BUNDLE: &str = "ca.crt";
    /// The CA that signs the serving certificate.
    pub const SIGNER_CRT: &str = "ca-signer.crt";
    /// Its key.
    pub const SIGNER_KEY: &str = "ca-signer.key";
    /// Rotation, first phase: the new CA, trusted, not signing yet.
    pub const NEXT_CRT: &str = "ca-next.crt";
    /// Its key.
    pub const NEXT_KEY: &str = "ca-next.key";
    /// Rotation, second phase: the old CA, still trusted, no longer signing.
    pub const PREVIOUS_CRT: &str = "ca-previous.crt";
    /// When the current rotation phase began (unix seconds, rounded up:
    /// what versions that count whole seconds read).
    pub const PHASE_SINCE: &str = "rotation-phase-since";
    /// The same to the millisecond; read when it agrees with
    /// [`PHASE_SINCE`] (a writer that knows only seconds drops it).
    pub const PHASE_SINCE_MS: &str = "rotation-phase-since-ms";
}

/// A certificate (PEM) and its validity (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dated {
    /// The certificate, PEM.
    pub pem: String,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
}

impl Dated {
    /// Reads the validity of the first certificate in `pem`.
    pub fn parse(pem: String) -> Result<Dated, String> {
        use rustls::pki_types::pem::PemObject as _;
        let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or("no PEM CERTIFICATE block")?
            .map_err(|e| e.to_string())?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
        let v = cert.validity();
        let (not_before, not_after) = (v.not_before.timestamp(), v.not_after.timestamp());
        Ok(Dated {
            pem,
            not_before,
            not_after,
        })
    }

    /// The moment two thirds of its life have passed, when it is renewed
    /// (unix milliseconds: a third of 26 s is not a whole second).
    pub fn renew_at_ms(&self) -> i64 {
        let (start, end) = (ms(self.not_before), ms(self.not_after));
        start.saturating_add(end.saturating_sub(start) * 2 / 3)
    }

    /// notAfter in unix milliseconds.
    pub fn not_after_ms(&self) -> i64 {
        ms(self.not_after)
    }
}

/// A certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// The certificate.
    pub cert: Dated,
    /// The private key, PEM.
    pub key: String,
}

/// Where a CA rotation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// One CA: it signs and it alone is trusted.
    Steady,
    /// Phase 1: a new CA is trusted beside the signer, and signs nothing yet.
    Trusting {
        /// The new CA.
        next: Keyed,
        /// When this phase began (unix milliseconds).
        since: i64,
    },
    /// Phase 2: the new CA signs; the old one is still trusted, for the
    /// replicas that have not reloaded yet.
    Switched {
        /// The old CA.
        previous: Dated,
        /// When this phase began (unix milliseconds).
        since: i64,
    },
}

/// Everything the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// The serving certificate and key.
    pub serving: Keyed,
    /// The CA that signed `serving`.
    pub signer: Keyed,
    /// The rotation in progress, if any.
    pub rotation: Rotation,
}

/// Why the Secret's content is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    /// A key the content needs is absent.
    #[error("the key {0:?} is missing")]
    Missing(&'static str),
    /// A key holds something other than UTF-8 text.
    #[error("the key {0:?} is not text")]
    NotText(&'static str),
    /// A key holds no usable certificate or number.
    #[error("the key {key:?} is not usable: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// Why nothing was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// rcgen failed to make a key or a certificate.
    #[error("cannot issue a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The CA cannot sign now.
    #[error(transparent)]
    Renew(#[from] certs::RenewError),
    /// What was issued could not be read back (a bug).
    #[error("cannot read back the issued certificate: {0}")]
    Readback(String),
}

/// What to issue: the names of the serving certificate and the lifetimes.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The Service's names and the extra SANs.
    pub request: CertRequest,
    /// How long a CA is valid.
    pub ca_validity: Duration,
    /// How long a serving certificate is valid (at most until its CA ends).
    pub serving_validity: Duration,
}

impl Issuer {
    fn ca(&self, now: SystemTime) -> Result<Keyed, IssueError> {
        let req = CertRequest {
            validity: self.ca_validity,
            ..self.request.clone()
        };
        let (cert, key) = certs::issue_ca(&req, now)?;
        Ok(Keyed {
            cert: Dated::parse(cert).map_err(IssueError::Readback)?,
            key,
        })
    }

    fn serving(&self, signer: &Keyed, now: SystemTime) -> Result<Keyed, IssueError> {
        let req = CertRequest {
            validity: self.serving_validity,
            ..self.request.clone()
        };
        let renewed = certs::renew(&req, now, &signer.cert.pem, &signer.key)?;
        Ok(Keyed {
            cert: Dated::parse(renewed.issued.cert_pem).map_err(IssueError::Readback)?,
            key: renewed.issued.key_pem,
        })
    }

    /// A new CA and a serving certificate from it.
    pub fn fresh(&self, now: SystemTime) -> Result<Material, IssueError> {
        let signer = self.ca(now)?;
        Ok(Material {
            serving: self.serving(&signer, now)?,
            signer,
            rotation: Rotation::Steady,
        })
    }

    /// A new serving certificate from the current signer.
    pub fn renew_serving(&self, m: &Material, now: SystemTime) -> Result<Material, IssueError> {
        Ok(Material {
            serving: self.serving(&m.signer, now)?,
            ..m.clone()
        })
    }

    /// Phase 1: a new CA, trusted beside the signer.
    pub fn trust_next(&self, m: &Material, now: SystemTime) -> Result<Material, IssueError> {
        Ok(Material {
            rotation: Rotation::Trusting {
                next: self.ca(now)?,
                since: unix_ms(now),
            },
            ..m.clone()
        })
    }

    /// Phase 2: the new CA signs a new serving certificate; the old CA stays
    /// trusted. Without a phase 1 in progress, nothing changes.
    pub fn switch(&self, m: &Material, now: SystemTime) -> Result<Material, IssueError> {
        let Rotation::Trusting { next, .. } = &m.rotation else {
            return Ok(m.clone());
        };
        Ok(Material {
            serving: self.serving(next, now)?,
            signer: next.clone(),
            rotation: Rotation::Switched {
                previous: m.signer.cert.clone(),
                since: unix_ms(now),
            },
        })
    }
}

impl Material {
    /// Phase 3: the old CA is no longer trusted. Without a phase 2 in
    /// progress, nothing changes.
    pub fn drop_previous(&self) -> Material {
        match self.rotation {
            Rotation::Switched { .. } => Material {
                rotation: Rotation::Steady,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// The CAs to trust now, PEM, oldest first: the caBundle's content.
    pub fn bundle(&self) -> String {
        let pems: Vec<&str> = match &self.rotation {
            Rotation::Steady => vec![&self.signer.cert.pem],
            Rotation::Trusting { next, .. } => vec![&self.signer.cert.pem, &next.cert.pem],
            Rotation::Switched { previous, .. } => vec![&previous.pem, &self.signer.cert.pem],
        };
        pems.iter()
            .map(|p| p.trim_end())
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    /// The Secret's `data`.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_owned(), v.as_bytes().to_vec());
        };
        put(keys::TLS_CRT, &self.serving.cert.pem);
        put(keys::TLS_KEY, &self.serving.key);
        put(keys::SIGNER_CRT, &self.signer.cert.pem);
        put(keys::SIGNER_KEY, &self.signer.key);
        match &self.rotation {
            Rotation::Steady => {}
            Rotation::Trusting { next, since } => {
                put(keys::NEXT_CRT, &next.cert.pem);
                put(keys::NEXT_KEY, &next.key);
                put(keys::PHASE_SINCE, &ceil_secs(*since).to_string());
                put(keys::PHASE_SINCE_MS, &since.to_string());
            }
            Rotation::Switched { previous, since } => {
                put(keys::PREVIOUS_CRT, &previous.pem);
                put(keys::PHASE_SINCE, &ceil_secs(*since).to_string());
                put(keys::PHASE_SINCE_MS, &since.to_string());
            }
        }
        data.insert(keys::CA_BUNDLE.to_owned(), self.bundle().into_bytes());
        data
    }

    /// Reads the Secret's `data`.
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Material, MaterialError> {
        let text = |key: &'static str| -> Result<Option<String>, MaterialError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone())
                    .map(Some)
                    .map_err(|_| MaterialError::NotText(key)),
            }
        };
        let need = |key: &'static str| text(key)?.ok_or(MaterialError::Missing(key));
        let dated = |key: &'static str, pem: String| {
            Dated::parse(pem).map_err(|why| MaterialError::Invalid { key, why })
        };
        let keyed = |crt: &'static str, key: &'static str| -> Result<Keyed, MaterialError> {
            Ok(Keyed {
                cert: dated(crt, need(crt)?)?,
                key: need(key)?,
            })
        };
        // Milliseconds when the precise key agrees with the seconds one;
        // else the seconds (a Secret written by a version without it).
        let since =
            || -> Result<i64, MaterialError> {
                let secs: i64 = need(keys::PHASE_SINCE)?.trim().parse().map_err(
                    |e: std::num::ParseIntError| MaterialError::Invalid {
                        key: keys::PHASE_SINCE,
                        why: e.to_string(),
                    },
                )?;
                let precise = text(keys::PHASE_SINCE_MS)
                    .ok()
                    .flatten()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .filter(|m| ceil_secs(*m) == secs);
                Ok(precise.unwrap_or_else(|| ms(secs)))
            };
        let rotation = match (text(keys::NEXT_CRT)?, text(keys::PREVIOUS_CRT)?) {
            (Some(_), _) => Rotation::Trusting {
                next: keyed(keys::NEXT_CRT, keys::NEXT_KEY)?,
                since: since()?,
            },
            (None, Some(previous)) => Rotation::Switched {
                previous: dated(keys::PREVIOUS_CRT, previous)?,
                since: since()?,
            },
            (None, None) => Rotation::Steady,
        };
        Ok(Material {
            serving: keyed(keys::TLS_CRT, keys::TLS_KEY)?,
            signer: keyed(keys::SIGNER_CRT, keys::SIGNER_KEY)?,
            rotation,
        })
    }
}

/// `t` as unix seconds (0 before 1970).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `t` as unix milliseconds (0 before 1970): the schedule's clock.
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds as milliseconds.
pub fn ms(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

/// Unix milliseconds as seconds, rounded up: never before the moment.
fn ceil_secs(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn issuer() -> Issuer {
        Issuer {
            request: CertRequest {
                service: "pw".into(),
                namespace: "sys".into(),
                dns: vec![],
                ips: vec!["127.0.0.1".parse().expect("ip")],
                validity: Duration::from_secs(60),
            },
            ca_validity: Duration::from_secs(3600),
            serving_validity: Duration::from_secs(600),
        }
    }

    fn verifies(leaf: &Dated, ca: &Dated) -> bool {
        use rustls::pki_types::pem::PemObject as _;
        let der = |pem: &str| {
            rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
        };
        let (leaf_der, ca_der) = (der(&leaf.pem), der(&ca.pem));
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
        leaf.verify_signature(Some(ca.public_key())).is_ok()
    }

    /// The three phases of a CA rotation, each read back from the Secret's
    /// data as written: what the bundle trusts and who signs at each step.
    #[test]
    fn a_rotation_trusts_the_new_ca_before_it_signs_and_drops_the_old_one_after() {
        let (i, now) = (issuer(), SystemTime::now());
        let round_trip = |m: &Material| {
            let back = Material::from_data(&m.to_data()).expect("reads back");
            assert_eq!(&back, m, "the Secret's data holds everything");
            back
        };
        let steady = round_trip(&i.fresh(now).expect("fresh"));
        let old = steady.signer.cert.clone();
        assert!(verifies(&steady.serving.cert, &old));
        assert_eq!(steady.bundle(), format!("{}\n", old.pem.trim_end()));

        let trusting = round_trip(&i.trust_next(&steady, now).expect("phase 1"));
        let Rotation::Trusting { next, since } = &trusting.rotation else {
            panic!("phase 1: {:?}", trusting.rotation)
        };
        assert_eq!(*since, unix_ms(now));
        assert_eq!(trusting.serving, steady.serving, "phase 1 serves as before");
        assert_eq!(trusting.signer, steady.signer, "the old CA still signs");
        let both = format!("{}\n{}\n", old.pem.trim_end(), next.cert.pem.trim_end());
        assert_eq!(trusting.bundle(), both, "both trusted, oldest first");
        assert_ne!(next.cert.pem, old.pem);

        let switched = round_trip(&i.switch(&trusting, now).expect("phase 2"));
        assert_eq!(switched.signer, *next, "the new CA signs");
        assert!(verifies(&switched.serving.cert, &next.cert));
        assert!(!verifies(&switched.serving.cert, &old));
        assert_eq!(
            switched.bundle(),
            both,
            "the same bundle: no caBundle write"
        );

        let done = round_trip(&switched.drop_previous());
        assert_eq!(done.rotation, Rotation::Steady);
        assert_eq!(done.bundle(), format!("{}\n", next.cert.pem.trim_end()));
        assert_eq!(done.serving, switched.serving);

        // Steps out of order change nothing.
        assert_eq!(i.switch(&steady, now).expect("no-op"), steady);
        assert_eq!(trusting.drop_previous(), trusting);
    }

    /// A phase's start is kept to the millisecond, and still read from a
    /// Secret written by a version that knew only seconds.
    #[test]
    fn the_phase_start_round_trips_to_the_millisecond() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_435_200_250);
        let m = issuer().fresh(at).expect("fresh");
        let trusting = issuer().trust_next(&m, at).expect("phase 1");
        let mut data = trusting.to_data();
        let text =
            |d: &BTreeMap<String, Vec<u8>>, k| String::from_utf8(d[k].clone()).expect("text");
        assert_eq!(text(&data, keys::PHASE_SINCE_MS), "1795435200250");
        assert_eq!(text(&data, keys::PHASE_SINCE), "1795435201", "rounded up");
        let since =
            |d: &BTreeMap<String, Vec<u8>>| match Material::from_data(d).expect("reads").rotation {
                Rotation::Trusting { since, .. } => since,
                other => panic!("{other:?}"),
            };
        assert_eq!(since(&data), 1_795_435_200_250);
        data.insert(keys::PHASE_SINCE.into(), b"1795435300".to_vec());
        assert_eq!(
            since(&data),
            1_795_435_300_000,
            "disagreeing: the seconds win"
        );
        data.remove(keys::PHASE_SINCE_MS);
        assert_eq!(since(&data), 1_795_435_300_000, "an older writer's seconds");
    }

    #[test]
    fn unusable_data_says_which_key() {
        let m = issuer().fresh(SystemTime::now()).expect("fresh");
        let mut missing = m.to_data();
        missing.remove(keys::SIGNER_KEY);
        let mut garbage = m.to_data();
        garbage.insert(keys::TLS_CRT.into(), b"not a certificate".to_vec());
        let mut binary = m.to_data();
        binary.insert(keys::TLS_KEY.into(), vec![0xff, 0xfe]);
        let mut half = issuer()
            .trust_next(&m, SystemTime::now())
            .expect("phase 1")
            .to_data();
        half.remove(keys::PHASE_SINCE);
        let cases = [
            (missing, "the key \"ca-signer.key\" is missing"),
            (garbage, "the key \"tls.crt\" is not usable"),
            (binary, "the key \"tls.key\" is not text"),
            (half, "the key \"rotation-phase-since\" is missing"),
        ];
        for (data, want) in cases {
            let err = Material::from_data(&data).expect_err(want).to_string();
            assert!(err.starts_with(want), "{err}");
        }
    }
}
