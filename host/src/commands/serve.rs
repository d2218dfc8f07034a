//! `chassis serve`: the long-running host, listening first, then loading
//! its contracts, until SIGTERM or SIGINT.

use super::*;

/// `chassis serve`'s arguments.
#[derive(clap::Args)]
pub struct ServeCommand {
    /// The service's configuration file (TOML; every field has a default).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen on this address instead (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Do not watch the contract files: a changed contract or component
    /// is not reloaded (the default is to reload it; see `watch` in
    /// docs/serve.md).
    #[arg(long)]
    no_watch: bool,
    /// Also take tasks from this NATS JetStream server as a worker
    /// (e.g. nats://127.0.0.1:4222; several comma-separated). See
    /// docs/scale-out.md.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// This worker's name in its results (default: the host name).
    #[arg(long, requires = "nats")]
    worker_id: Option<String>,
    /// This worker's signing key file (`chassis keygen`): its results
    /// and mirrored audit records are signed with it (nats.signing_key).
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// Also serve the swarms deployed to the fleet (`chassis deploy`;
    /// nats.deployments): needs --deployer-key (or
    /// nats.trusted_deployers).
    #[arg(long)]
    deployments: bool,
    /// A trusted deployer's public key file (`chassis keygen`): deployed
    /// bundles it signed are served. Repeat for each deployer.
    #[arg(long, value_name = "FILE")]
    deployer_key: Vec<PathBuf>,
    /// A label of this worker (nats.labels): a deployed contract whose
    /// `[placement] labels` are all among them is served here. Repeat for
    /// each label.
    #[arg(long, value_name = "LABEL")]
    label: Vec<String>,
    #[command(flatten)]
    auth: NatsAuthArgs,
    /// Contract files, directories of contracts (`*.toml`), or swarm
    /// projects' directories (made by `chassis new`: their contract),
    /// added to the configuration's.
    contracts: Vec<PathBuf>,
}

impl ServeCommand {
    /// Start the service, listen, serve until a signal.
    pub async fn execute(self) -> Result<()> {
        let mut options = self;
        let contracts = std::mem::take(&mut options.contracts);
        use crate::serve::{ServeConfig, Service};
        let mut config = match &options.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        for path in contracts {
            config.contracts.push(super::project::served(path)?);
        }
        if let Some(listen) = options.listen {
            config.listen = listen;
        }
        if options.no_watch {
            config.watch = false;
        }
        if let Some(url) = options.nats {
            let nats = config.nats.get_or_insert_with(Default::default);
            nats.url = url;
        }
        if let (Some(id), Some(nats)) = (options.worker_id, config.nats.as_mut()) {
            nats.worker_id = Some(id);
        }
        let flags_for_nats = options.signing_key.is_some()
            || options.auth.given()
            || options.deployments
            || !options.deployer_key.is_empty()
            || !options.label.is_empty();
        match config.nats.as_mut() {
            Some(nats) => {
                if let Some(key) = options.signing_key {
                    nats.signing_key = Some(key);
                }
                nats.deployments |= options.deployments;
                nats.trusted_deployers.extend(options.deployer_key);
                nats.labels.extend(options.label);
                if options.auth.given() {
                    if nats.auth != Default::default() {
                        bail!(
                            "NATS credentials are in the configuration's [nats.auth] and on the command line: give them in one place"
                        );
                    }
                    nats.auth = options.auth.auth()?;
                }
            }
            None if flags_for_nats => {
                bail!(
                    "--signing-key, --deployments, --deployer-key, --label and the --nats-* credentials are for a worker: give --nats URL too (or [nats] in --config)"
                )
            }
            None => {}
        }
        if config.cache_dir.is_none() {
            // The per-user cache `chassis run` uses: restarts skip Cranelift.
            config.cache_dir = user_dir(UserDir::Cache);
        }
        if config.storage_dir.is_none() && !config.shares_store() {
            // The per-user store `chassis run` uses: objects outlive a restart.
            config.storage_dir = user_dir(UserDir::Storage);
        }
        let deployments = config.nats.as_ref().is_some_and(|n| n.deployments);
        if config.contracts.is_empty() && !deployments {
            bail!(
                "no contracts to serve: name contract files or directories (e.g. `chassis serve config/`) or list them in --config, or serve the fleet's deployments (--nats URL --deployments)"
            );
        }
        let address = config.listen;
        let service = std::sync::Arc::new(Service::new(config).await?);
        // Listen first: /healthz answers at once, /readyz says how far the
        // loading is, and tasks are refused (503 loading) until it is done.
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let bound = listener.local_addr()?;
        // Always printed, --quiet or not: scripts wait for these lines.
        eprintln!("chassis serve: listening on http://{bound} (loading its swarms)");
        if service.config().status_page {
            eprintln!("chassis serve: status page at http://{bound}/");
        }
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
        let loader = {
            let service = service.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                match service.load().await {
                    Ok(()) => {
                        let loaded = service.chassis().list().len();
                        let failed = service.failed().len();
                        eprintln!(
                            "chassis serve: ready ({loaded} swarms loaded, {failed} failed, in {:.1} s)",
                            started.elapsed().as_secs_f64()
                        );
                        Ok(())
                    }
                    Err(e) => {
                        let _ = failed_tx.send(());
                        Err(e)
                    }
                }
            })
        };
        let shutdown = async move {
            tokio::select! {
                () = shutdown_signal() => {}
                Ok(()) = failed_rx => {}
            }
        };
        service.serve(listener, shutdown).await?;
        if loader.is_finished() {
            loader.await??;
        } else {
            loader.abort();
        }
        eprintln!("chassis serve: stopped");
        Ok(())
    }
}
