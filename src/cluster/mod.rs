//! Every call to the Kubernetes API (the `kube` crate): the client built from
//! the kubeconfig or the in-cluster credentials, shared by `check`, live
//! `explain` and the in-cluster certificates. The review path never comes
//! here: `serve` and `mutate` decide from the request alone.

pub mod certificates;

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub mod check;
pub mod explain;
pub mod registration;

/// How to reach the API server: flattened into the commands that need it.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// The kubeconfig context to use (default: the current context; in a pod
    /// without a kubeconfig, the pod's ServiceAccount).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config; in a
    /// pod without either, the in-cluster credentials).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// A client for the API server that `args` names, the way `kubectl` finds
/// it: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`, else the
/// in-cluster ServiceAccount. Each request times out after `timeout`.
///
/// The error says which source was tried, so "no cluster" reads as such.
pub async fn client(args: &ClusterArgs, timeout: Duration) -> anyhow::Result<kube::Client> {
    // rustls needs one process-wide crypto provider; the server's is ring.
    let _ =
        rustls::crypto::CryptoProvider::install_default(rustls::crypto::ring::default_provider());
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = match &args.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("using the kubeconfig ($KUBECONFIG or ~/.kube/config)")?,
        None => kube::Config::infer()
            .await
            .context("no kubeconfig ($KUBECONFIG, ~/.kube/config) and no in-cluster credentials")?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    kube::Client::try_from(config).context("building the Kubernetes client")
}
