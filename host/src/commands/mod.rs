//! The `chassis` command line, one module per command: each holds its
//! clap arguments (`XCommand`) and an `execute` method; `src/bin/chassis.rs`
//! parses the command line and dispatches. What several commands share is
//! here: writing to stdout (a closed stdout ends a command quietly), the
//! NATS sign-in and trust flags, the default cache and storage
//! directories, a host for one contract, and opening an audit log.
//! Behind the `cli` feature, for the `chassis` binary alone.

// clap shows the arguments' doc comments as `--help`, text for a terminal
// (`CHASSIS_SECRET__<SWARM>__<KEY>`), not HTML.
#![allow(rustdoc::invalid_html_tags, rustdoc::bare_urls)]

pub mod audit;
pub mod build;
mod compiled;
pub mod deploy;
pub mod fleet;
pub mod inspect;
pub mod keygen;
pub mod new;
pub mod optimize;
pub(crate) mod project;
pub mod release;
pub mod report;
pub mod run;
mod script;
pub mod serve;
pub mod submit;
pub mod testing;
mod tools;
pub mod validate;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::{Chassis, ChassisConfig, SecretStore, ServiceContract, TaskRequest};

/// What every command may use of the global flags.
#[derive(Debug, Clone, Copy)]
pub struct Global {
    /// Largest component file read, in bytes.
    pub max_component_bytes: u64,
}

/// Write `text` and a newline to stdout; a closed stdout becomes an
/// [`StdoutClosed`] error that `main` turns into a quiet exit.
fn out(text: impl std::fmt::Display) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::Error::new(e).context("writing to stdout")
            }
        })
}

/// stdout was closed by the reader.
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
pub struct StdoutClosed;

/// JSON for stdout: pretty, with the characters a terminal acts on escaped.
fn json_out(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    out(crate::text::json_for_terminal(&text))
}

/// `value` as one line of JSON on stdout (escaped for a terminal).
fn json_line(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string(value)?;
    out(crate::text::json_for_terminal(&text))
}

/// Longest `error:` line printed, in bytes.
pub const MAX_ERROR_LINE_BYTES: usize = 16 * 1024;

/// How to sign in to a NATS server: at most one of a creds file, an nkey
/// seed file, a user (with a password) or a token; secrets from files or
/// environment variables only. See docs/scale-out.md, "Security".
#[derive(clap::Args, Debug, Default, Clone)]
pub struct NatsAuthArgs {
    /// A NATS credentials file (user JWT and nkey seed).
    #[arg(long, value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// A file holding an nkey seed.
    #[arg(long, value_name = "FILE")]
    nats_nkey: Option<PathBuf>,
    /// A NATS user name (with --nats-password-file or --nats-password-env).
    #[arg(long, value_name = "USER")]
    nats_user: Option<String>,
    /// A file holding the user's password.
    #[arg(long, value_name = "FILE")]
    nats_password_file: Option<PathBuf>,
    /// An environment variable holding the user's password.
    #[arg(long, value_name = "VAR")]
    nats_password_env: Option<String>,
    /// A file holding a NATS token.
    #[arg(long, value_name = "FILE")]
    nats_token_file: Option<PathBuf>,
    /// An environment variable holding a NATS token.
    #[arg(long, value_name = "VAR")]
    nats_token_env: Option<String>,
    /// CA certificates (PEM) for a tls:// server; requires TLS.
    #[arg(long, value_name = "FILE")]
    nats_ca: Option<PathBuf>,
    /// A client certificate (PEM) for servers that verify clients.
    #[arg(long, value_name = "FILE", requires = "nats_key")]
    nats_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "nats_cert")]
    nats_key: Option<PathBuf>,
}

impl NatsAuthArgs {
    /// Whether any flag was given.
    fn given(&self) -> bool {
        self.nats_creds.is_some()
            || self.nats_nkey.is_some()
            || self.nats_user.is_some()
            || self.nats_password_file.is_some()
            || self.nats_password_env.is_some()
            || self.nats_token_file.is_some()
            || self.nats_token_env.is_some()
            || self.nats_ca.is_some()
            || self.nats_cert.is_some()
    }

    /// These flags, leaving none in their place.
    fn take(&mut self) -> Self {
        std::mem::take(self)
    }

    /// As the library takes them, checked.
    fn auth(self) -> Result<crate::serve::config::NatsAuth> {
        let auth = crate::serve::config::NatsAuth {
            creds_file: self.nats_creds,
            nkey_file: self.nats_nkey,
            user: self.nats_user,
            password_file: self.nats_password_file,
            password_env: self.nats_password_env,
            token_file: self.nats_token_file,
            token_env: self.nats_token_env,
            tls_ca_file: self.nats_ca,
            tls_cert_file: self.nats_cert,
            tls_key_file: self.nats_key,
        };
        auth.check()
            .map_err(|e| anyhow::anyhow!("NATS credentials: {e}"))?;
        Ok(auth)
    }
}

/// Whose signatures a reader of the queue believes.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TrustArgs {
    /// A trusted worker's public key file (`chassis keygen` writes it;
    /// repeat for each worker). Results and mirrored audit records signed
    /// by no such key are refused. For `audit verify --nats`, give the key
    /// of that --worker alone.
    #[arg(long, value_name = "FILE")]
    worker_key: Vec<PathBuf>,
    /// Believe unsigned results and records: only on a NATS server no one
    /// else can publish to (any of its clients could forge them).
    #[arg(long, conflicts_with = "worker_key")]
    insecure_unsigned: bool,
}

impl TrustArgs {
    fn trust(&self) -> Result<crate::serve::queue::trust::Trust> {
        use crate::serve::queue::trust::Trust;
        if self.insecure_unsigned {
            return Ok(Trust::InsecureUnsigned);
        }
        if self.worker_key.is_empty() {
            bail!(
                "give the public key of each worker whose results you believe (--worker-key FILE, written by `chassis keygen`), or --insecure-unsigned on a NATS server no one else can publish to"
            );
        }
        Ok(Trust::from_files(&self.worker_key)?)
    }
}

/// A per-user directory of `chassis`.
#[derive(Debug, Clone, Copy)]
enum UserDir {
    /// Compiled components: `$CHASSIS_CACHE_DIR`, else the platform's
    /// cache directory (`$XDG_CACHE_HOME/chassis`, `~/.cache/chassis`).
    Cache,
    /// Swarms' objects: `$CHASSIS_STORAGE_DIR`, else `storage` in the
    /// platform's data directory (`$XDG_DATA_HOME/chassis/storage`,
    /// `~/.local/share/chassis/storage`).
    Storage,
}

/// Where `dir` is when no flag names it (`None`: no home to put it in).
fn user_dir(dir: UserDir) -> Option<PathBuf> {
    let var = match dir {
        UserDir::Cache => "CHASSIS_CACHE_DIR",
        UserDir::Storage => "CHASSIS_STORAGE_DIR",
    };
    if let Some(given) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return Some(given.into());
    }
    let platform = directories::ProjectDirs::from("", "", "chassis")?;
    Some(match dir {
        UserDir::Cache => platform.cache_dir().to_path_buf(),
        UserDir::Storage => platform.data_dir().join("storage"),
    })
}

/// The object store for `dir` (or the default one).
fn open_store(dir: Option<PathBuf>) -> Result<std::sync::Arc<dyn crate::storage::Store>> {
    let dir = dir
        .or_else(|| user_dir(UserDir::Storage))
        .context("no storage directory: give --storage-dir (or set CHASSIS_STORAGE_DIR or HOME)")?;
    Ok(std::sync::Arc::new(crate::storage::files::FileStore::open(
        &dir,
    )?))
}

/// A host for one contract, with the component cache as the flags say, and
/// an object store (in `storage_dir`, or the default one) when the
/// contract grants storage.
fn host_for(
    contract: &ServiceContract,
    max_component_bytes: u64,
    sinks: crate::EventSinks,
    secrets: Option<SecretStore>,
    cache: (bool, Option<PathBuf>),
    storage_dir: Option<PathBuf>,
) -> Result<Chassis> {
    let mut config =
        ChassisConfig::sized_for([contract]).with_max_component_bytes(max_component_bytes);
    if contract.storage.access != crate::contract::StorageAccess::None {
        config = config.with_store(open_store(storage_dir)?);
    }
    if let Some(secrets) = secrets {
        config = config.with_secrets(secrets);
    }
    config.event_sinks = sinks;
    // An explicit --cache-dir must work; the default one is best effort.
    Ok(match cache {
        (true, _) => Chassis::with_config(config)?,
        (false, Some(dir)) => Chassis::with_config(config.with_cache_dir(dir))?,
        (false, None) => match user_dir(UserDir::Cache) {
            Some(dir) => match Chassis::with_config(config.clone().with_cache_dir(&dir)) {
                Ok(chassis) => chassis,
                Err(e) => {
                    tracing::warn!(target: "chassis", "{e}; compiling without a cache");
                    Chassis::with_config(config)?
                }
            },
            None => Chassis::with_config(config)?,
        },
    })
}

/// Open the audit log at `path` (the error names it as the audit log),
/// judging `contract`'s swarm by it where the log's records do not say.
fn open_audit(
    path: &Path,
    fsync: crate::audit::FsyncPolicy,
    contract: Option<&ServiceContract>,
) -> Result<std::sync::Arc<crate::audit::AuditLog>> {
    let mut options = crate::audit::AuditOptions::new(fsync);
    options.contracts = contract
        .map(|c| (c.swarm_id.clone(), c.health_settings()))
        .into_iter()
        .collect();
    crate::audit::AuditLog::open_with(path, options).context("audit log")
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Largest payload read from a file or stdin, in bytes.
const MAX_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;
