//! The flags of `certs`.

use std::path::PathBuf;

use clap::Args;

/// Flags of `certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The webhook Service's name.
    #[arg(long, default_value = "persistence-webhook")]
    pub service: String,

    /// The webhook Service's namespace.
    #[arg(long, default_value = "persistence-webhook")]
    pub namespace: String,

    /// Extra DNS names for the serving certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    pub dns: Vec<String>,

    /// Extra IP addresses for the serving certificate (repeatable).
    #[arg(long, value_name = "IP")]
    pub ip: Vec<std::net::IpAddr>,

    /// How long both certificates are valid.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "365days",
        value_parser = crate::flags::human_duration
    )]
    pub validity: humantime::Duration,

    /// Where to write ca.crt, ca.key, tls.crt, tls.key, ca-bundle.b64 and
    /// webhook-ca-bundle.yaml (a kustomize patch).
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub out: PathBuf,

    /// Replace an existing CA in --out (every caBundle that trusts the old
    /// one must then be updated).
    #[arg(long, conflicts_with = "renew")]
    pub force: bool,

    /// Keep the CA in --out and issue a new serving certificate from it: the
    /// caBundle does not change, so rotation needs no webhook update.
    #[arg(long)]
    pub renew: bool,
}
