//! The service's own configuration file (`chassis serve --config F`): where
//! it listens, which contracts it loads, where its audit log, secrets and
//! component cache are, and its request limits. Every field has a default,
//! so no file at all is a valid configuration (`docs/serve.md` lists them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::audit::FsyncPolicy;
use crate::seconds;

/// The address `chassis serve` listens on unless told otherwise: loopback
/// only, never every interface by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// Largest request body, by default: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long in-flight tasks may run on after a shutdown signal, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Connections served at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Connections served at once from one client address, by default: a
/// quarter of [`DEFAULT_MAX_CONNECTIONS`], so no one address holds them all.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// How long a client has to take a whole answer, by default.
pub const DEFAULT_RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a client may take none of a pending answer, by default.
pub const DEFAULT_RESPONSE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Each connection's socket send buffer, by default: 256 KiB.
pub const DEFAULT_SEND_BUFFER_BYTES: usize = 256 * 1024;

/// The service's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address and port to listen on (`127.0.0.1:7878`).
    pub listen: SocketAddr,
    /// Contract files, or directories whose `*.toml` files are contracts.
    /// Relative paths are relative to the configuration file.
    pub contracts: Vec<PathBuf>,
    /// Largest request body in bytes; larger ones are refused with 413.
    pub max_body_bytes: usize,
    /// How long in-flight tasks may run on after SIGTERM or SIGINT
    /// (`shutdown_grace_seconds`).
    #[serde(
        rename = "shutdown_grace_seconds",
        deserialize_with = "seconds::positive"
    )]
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's headers, and again
    /// its body; a client slower than that is cut off
    /// (`request_read_timeout_seconds`).
    #[serde(
        rename = "request_read_timeout_seconds",
        deserialize_with = "seconds::positive"
    )]
    pub request_read_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections served at once from one client address; more are
    /// answered 503 and closed (set it to `max_connections` behind a
    /// reverse proxy, whose connections all come from its address).
    pub max_connections_per_address: usize,
    /// How long a client has to take a whole answer once it is being
    /// written; a slower one is cut off (`response_write_timeout_seconds`).
    #[serde(
        rename = "response_write_timeout_seconds",
        deserialize_with = "seconds::positive"
    )]
    pub response_write_timeout: Duration,
    /// How long a client may take none of a pending answer (its socket
    /// full, nothing read) before it is cut off
    /// (`response_idle_timeout_seconds`).
    #[serde(
        rename = "response_idle_timeout_seconds",
        deserialize_with = "seconds::positive"
    )]
    pub response_idle_timeout: Duration,
    /// Bytes of unread answers the kernel may hold per connection (its
    /// socket send buffer; 0 leaves the kernel's own sizing, which grows to
    /// megabytes and hides a client that does not read from the timeouts).
    pub send_buffer_bytes: usize,
    /// Watch the contract files and their components, and reload a swarm
    /// whose files change (`docs/serve.md`, "Hot reload").
    pub watch: bool,
    /// A secrets file (see `docs/security.md`); none by default.
    pub secrets: Option<PathBuf>,
    /// A directory for precompiled components; none by default.
    pub cache_dir: Option<PathBuf>,
    /// Where swarms granted storage keep their objects (`docs/contract.md`,
    /// `[storage]`); none by default (the `chassis` command names the
    /// per-user one). Not used with `nats.shared_storage`.
    pub storage_dir: Option<PathBuf>,
    /// The audit log.
    pub audit: AuditConfig,
    /// How tasks wait for a free slot of their swarm.
    pub queue: crate::QueueConfig,
    /// How tasks addressed to a capability choose their swarm
    /// (`[routing] selection_threshold, seed`; `docs/governor.md`).
    pub routing: crate::RoutingConfig,
    /// Take tasks from a NATS JetStream queue too (`docs/scale-out.md`);
    /// off by default.
    pub nats: Option<NatsSettings>,
    /// The admin routes' bearer token.
    pub admin: AdminConfig,
    /// Serve the read-only status page at `/` and the audit trail it shows
    /// at `/v1/audit` (on by default; `docs/serve.md`, "Status page").
    pub status_page: bool,
    /// Host names requests may be addressed to (their `Host` header), on
    /// top of `localhost` and IP addresses; `"*"` lets every name in. With
    /// none, a server on a loopback address answers only those, and one on
    /// another address answers every name.
    pub allowed_hosts: Vec<String>,
}

/// Where the admin routes' bearer token comes from: an environment
/// variable or a file, never the command line. With neither, the admin
/// routes are off (404).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// An environment variable holding the token.
    pub token_env: Option<String>,
    /// A file holding the token (surrounding whitespace ignored).
    pub token_file: Option<PathBuf>,
}

/// The NATS JetStream queue this server takes tasks from, as a worker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// The server URL, or several, comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// This worker's name in its results (the host name by default).
    pub worker_id: Option<String>,
    /// Deliveries after which a task is given up as `abandoned` (5).
    pub max_deliveries: u32,
    /// Replicas of the streams this worker makes if they do not exist (1;
    /// 3 on a three-node cluster).
    pub replicas: usize,
    /// How long a task id is remembered, to drop a resubmission (120 s;
    /// `duplicate_window_seconds`).
    #[serde(
        rename = "duplicate_window_seconds",
        deserialize_with = "seconds::positive"
    )]
    pub duplicate_window: Duration,
    /// How long results are kept (a day; `results_max_age_seconds`).
    #[serde(
        rename = "results_max_age_seconds",
        deserialize_with = "seconds::positive"
    )]
    pub results_max_age: Duration,
    /// Added to a swarm's `task_timeout_seconds` for how long a delivered
    /// task may go without a word from its worker before it is delivered
    /// again (30 s; `ack_slack_seconds`).
    #[serde(rename = "ack_slack_seconds", deserialize_with = "seconds::positive")]
    pub ack_slack: Duration,
    /// Keep swarms' objects (the storage import) in the JetStream bucket
    /// `chassis_storage`, shared by every worker, instead of in
    /// `storage_dir` (true).
    pub shared_storage: bool,
    /// How this worker signs in to the NATS server (`[nats.auth]`: a
    /// creds file, an nkey seed file, a user and password or a token from
    /// a file or an environment variable; TLS).
    pub auth: NatsAuth,
    /// This worker's Ed25519 signing key file (`chassis keygen`): its
    /// results and mirrored audit records are signed with it, and clients
    /// believe only results signed by a key they trust. Without one, they
    /// go out unsigned (and a warning says so).
    pub signing_key: Option<PathBuf>,
    /// The time between this worker's heartbeats (5 s;
    /// `heartbeat_seconds`): the entry that says which swarms it serves.
    /// It counts as gone after three missed.
    #[serde(rename = "heartbeat_seconds", deserialize_with = "seconds::positive")]
    pub heartbeat: Duration,
    /// Serve the swarms deployed to the fleet (`chassis deploy`), beside
    /// the contract files (false; `--deployments`): their signed bundles
    /// are read from the NATS object store and the deployments bucket
    /// watched (`docs/scale-out.md`, "Deploying").
    pub deployments: bool,
    /// The public key files of the deployers whose bundles this worker
    /// serves (`chassis keygen`; `--deployer-key`); required with
    /// `deployments`.
    pub trusted_deployers: Vec<PathBuf>,
    /// This worker's labels (`--label`): a deployed contract's
    /// `[placement] labels` must all be among them for it to be served
    /// here.
    pub labels: Vec<String>,
    /// The largest deployed component this worker fetches, in bytes
    /// (64 MiB).
    pub max_bundle_bytes: u64,
}

/// Default [`NatsSettings::max_bundle_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_string(),
            worker_id: None,
            max_deliveries: 5,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            results_max_age: Duration::from_secs(86_400),
            ack_slack: Duration::from_secs(30),
            shared_storage: true,
            auth: Default::default(),
            signing_key: None,
            heartbeat: Duration::from_secs(5),
            deployments: false,
            trusted_deployers: Vec::new(),
            labels: Vec::new(),
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
        }
    }
}

/// How a client or worker proves who it is to the NATS server. At most one
/// of `creds_file`, `nkey_file`, `user` and the token may be given; secrets
/// come from files or environment variables, never the command line or
/// this configuration itself.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsAuth {
    /// A NATS credentials file (a user JWT and its nkey seed).
    pub creds_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey_file: Option<PathBuf>,
    /// A user name, with `password_file` or `password_env`.
    pub user: Option<String>,
    /// A file holding the user's password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the user's password.
    pub password_env: Option<String>,
    /// A file holding a token.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding a token.
    pub token_env: Option<String>,
    /// CA certificates (PEM) a `tls://` server's certificate must chain to;
    /// giving it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM), with `tls_key_file`, for servers that
    /// verify clients.
    pub tls_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub tls_key_file: Option<PathBuf>,
}

impl NatsAuth {
    /// Check that the fields make one way of signing in.
    pub fn check(&self) -> Result<(), String> {
        let ways = [
            self.creds_file.is_some(),
            self.nkey_file.is_some(),
            self.user.is_some(),
            self.token_file.is_some() || self.token_env.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(
                "give one of creds_file, nkey_file, user (with a password) or a token".to_string(),
            );
        }
        if self.password_file.is_some() && self.password_env.is_some() {
            return Err("give password_file or password_env, not both".to_string());
        }
        if self.token_file.is_some() && self.token_env.is_some() {
            return Err("give token_file or token_env, not both".to_string());
        }
        if self.user.is_some() != (self.password_file.is_some() || self.password_env.is_some()) {
            return Err(
                "user and a password (password_file or password_env) go together".to_string(),
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("tls_cert_file and tls_key_file go together".to_string());
        }
        Ok(())
    }

    /// Make every relative path relative to `base`.
    pub fn rebase(&mut self, base: &Path) {
        for path in [
            &mut self.creds_file,
            &mut self.nkey_file,
            &mut self.password_file,
            &mut self.token_file,
            &mut self.tls_ca_file,
            &mut self.tls_cert_file,
            &mut self.tls_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// Where the audit log is, how often it is synced, when a segment is
/// closed and what retention removes (`docs/audit.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's directory of segments (an older single-file log there
    /// becomes its first segment); none by default (no audit log).
    pub path: Option<PathBuf>,
    /// `always`, `never`, `every:N` or `interval:MS` (default `interval:1000`).
    pub fsync: String,
    /// A segment is closed (and the next starts with a checkpoint) once it
    /// holds this many bytes (default 32 MiB): the most a restart after a
    /// crash reads.
    pub segment_max_bytes: u64,
    /// ... or once its first record is this old (default a day).
    pub segment_max_age_seconds: f64,
    /// What retention removes when a segment closes; keeps everything by
    /// default.
    pub retention: RetentionConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            fsync: "interval:1000".to_string(),
            segment_max_bytes: crate::audit::DEFAULT_SEGMENT_MAX_BYTES,
            segment_max_age_seconds: crate::audit::DEFAULT_SEGMENT_MAX_AGE.as_secs_f64(),
            retention: RetentionConfig::default(),
        }
    }
}

/// Ten years, in seconds: the longest a segment may stay open.
const TEN_YEARS_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// `[audit.retention]`: the oldest segments are archived (or deleted)
/// while the log keeps more than a limit allows; only segments a newer
/// checkpoint covers. No limit: everything is kept.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep at most this many segments.
    pub keep_segments: Option<usize>,
    /// Keep at most this many bytes of segments.
    pub keep_bytes: Option<u64>,
    /// Keep segments written to within this many days.
    pub keep_days: Option<f64>,
    /// `archive` (the default: move them to `archive_dir`) or `delete`.
    pub action: Option<String>,
    /// Where archived segments go (default: `archive/` in the log's
    /// directory; on the same file system).
    pub archive_dir: Option<PathBuf>,
}

impl AuditConfig {
    /// The log's options, checked: the fsync policy, segment limits and
    /// retention.
    pub fn options(&self) -> Result<crate::audit::AuditOptions, String> {
        let fsync = self
            .fsync
            .parse()
            .map_err(|e| format!("audit.fsync: {e}"))?;
        if self.segment_max_bytes < 4096 {
            return Err(format!(
                "audit.segment_max_bytes = {}: at least 4096",
                self.segment_max_bytes
            ));
        }
        let age = self.segment_max_age_seconds;
        if !(age.is_finite() && (1.0..=TEN_YEARS_SECONDS).contains(&age)) {
            return Err(format!(
                "audit.segment_max_age_seconds = {age}: from 1 to {TEN_YEARS_SECONDS}"
            ));
        }
        let r = &self.retention;
        let delete = match r.action.as_deref() {
            None | Some("archive") => false,
            Some("delete") => true,
            Some(other) => {
                return Err(format!(
                    "audit.retention.action = {other:?}: expected \"archive\" or \"delete\""
                ));
            }
        };
        if r.keep_segments == Some(0) {
            return Err("audit.retention.keep_segments: at least 1".to_string());
        }
        let keep_age = match r.keep_days {
            Some(days) if !(days.is_finite() && days > 0.0 && days <= 36_500.0) => {
                return Err(format!(
                    "audit.retention.keep_days = {days}: more than 0, at most 36500"
                ));
            }
            Some(days) => Some(std::time::Duration::from_secs_f64(days * 86_400.0)),
            None => None,
        };
        let mut options = crate::audit::AuditOptions::new(fsync);
        options.segment_max_bytes = self.segment_max_bytes;
        options.segment_max_age = std::time::Duration::from_secs_f64(age);
        options.retention = crate::audit::Retention {
            keep_segments: r.keep_segments,
            keep_bytes: r.keep_bytes,
            keep_age,
            delete,
            archive_dir: r.archive_dir.clone(),
        };
        Ok(options)
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            contracts: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            request_read_timeout: Duration::from_secs(30),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            response_write_timeout: DEFAULT_RESPONSE_WRITE_TIMEOUT,
            response_idle_timeout: DEFAULT_RESPONSE_IDLE_TIMEOUT,
            send_buffer_bytes: DEFAULT_SEND_BUFFER_BYTES,
            watch: true,
            secrets: None,
            cache_dir: None,
            storage_dir: None,
            audit: AuditConfig::default(),
            queue: crate::QueueConfig::default(),
            routing: crate::RoutingConfig::default(),
            nats: None,
            admin: AdminConfig::default(),
            status_page: true,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the serve configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when TOML gives one.
        reason: String,
    },
}

impl ServeConfig {
    /// Read a configuration file; relative paths in it become relative to
    /// the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::files::read_bounded_text(path, 1024 * 1024).map_err(|source| {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let mut config = Self::from_toml(&text).map_err(|reason| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        config.contracts.iter_mut().for_each(rebase);
        config.secrets.as_mut().map(rebase);
        config.cache_dir.as_mut().map(rebase);
        config.storage_dir.as_mut().map(rebase);
        config.audit.path.as_mut().map(rebase);
        config.audit.retention.archive_dir.as_mut().map(rebase);
        config.admin.token_file.as_mut().map(rebase);
        if let Some(nats) = config.nats.as_mut() {
            nats.auth.rebase(base);
            nats.signing_key.as_mut().map(rebase);
            nats.trusted_deployers.iter_mut().for_each(rebase);
        }
        Ok(config)
    }

    /// Whether a request whose `Host` header is `host` is answered by a
    /// server listening on a loopback address (`loopback`) or another: an
    /// IP address, `localhost` (or a name under it) and the names in
    /// `allowed_hosts` always; any name when `allowed_hosts` holds `"*"`,
    /// or is empty and the server does not listen on loopback.
    pub fn host_allowed(&self, host: &str, loopback: bool) -> bool {
        let port_only = |rest: &str| {
            rest.is_empty()
                || rest
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        let name = match host.strip_prefix('[') {
            Some(v6) => {
                return v6.split_once(']').is_some_and(|(ip, rest)| {
                    ip.parse::<std::net::Ipv6Addr>().is_ok() && port_only(rest)
                });
            }
            None => match host.rsplit_once(':') {
                Some((name, port)) if port_only(&format!(":{port}")) => name,
                _ => host,
            },
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || name.ends_with(".localhost")
        {
            return true;
        }
        if self.allowed_hosts.is_empty() {
            return !loopback;
        }
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(&name))
    }

    /// Parse and check configuration text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Check the fields a TOML type cannot: durations (positive, at most a
    /// year, so a clock can add them: checked as a file is read, again here
    /// for a configuration built in code), counts, names, and the audit
    /// log's settings. A configuration read from a file is checked as it is
    /// read; [`crate::serve::Service::new`] checks one built in code.
    pub fn check(&self) -> Result<(), String> {
        let config = self;
        config.audit.options()?;
        // At most a year: a duration must fit what clocks can add. A file's
        // are checked as they are read; these are for one built in code.
        for (name, d) in [
            ("shutdown_grace_seconds", config.shutdown_grace),
            ("queue.max_wait_seconds", config.queue.max_wait),
            ("request_read_timeout_seconds", config.request_read_timeout),
            (
                "response_write_timeout_seconds",
                config.response_write_timeout,
            ),
            (
                "response_idle_timeout_seconds",
                config.response_idle_timeout,
            ),
        ] {
            seconds::check(name, d)?;
        }
        let threshold = config.routing.selection_threshold;
        if !(threshold.is_finite() && (0.0..=1.0).contains(&threshold)) {
            return Err(format!(
                "routing.selection_threshold = {threshold}: from 0 to 1"
            ));
        }
        if config.admin.token_env.is_some() && config.admin.token_file.is_some() {
            return Err("admin: give token_env or token_file, not both".to_string());
        }
        if let Some(nats) = &config.nats {
            for (name, d) in [
                ("nats.duplicate_window_seconds", nats.duplicate_window),
                ("nats.results_max_age_seconds", nats.results_max_age),
                ("nats.ack_slack_seconds", nats.ack_slack),
                ("nats.heartbeat_seconds", nats.heartbeat),
            ] {
                seconds::check(name, d)?;
            }
            nats.auth.check().map_err(|e| format!("nats.auth: {e}"))?;
            if let Some(id) = &nats.worker_id
                && (id.is_empty()
                    || id.len() > 64
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            {
                return Err(format!(
                    "nats.worker_id {id:?}: 1 to 64 letters, digits, '-' or '_' (it names a NATS subject)"
                ));
            }
            if nats.max_deliveries == 0 || nats.replicas == 0 {
                return Err("nats.max_deliveries and nats.replicas must be at least 1".to_string());
            }
            if nats.deployments && nats.trusted_deployers.is_empty() {
                return Err("nats.deployments = true needs nats.trusted_deployers: the public key files of the deployers whose bundles this worker serves (`chassis keygen`; --deployer-key)".to_string());
            }
            if nats.labels.len() > crate::contract::MAX_LABELS {
                return Err(format!(
                    "nats.labels: at most {} labels",
                    crate::contract::MAX_LABELS
                ));
            }
            for label in &nats.labels {
                crate::contract::check_label(label).map_err(|e| format!("nats.labels: {e}"))?;
            }
            if nats.max_bundle_bytes == 0
                || nats.max_bundle_bytes > crate::DEFAULT_MAX_COMPONENT_BYTES
            {
                return Err(format!(
                    "nats.max_bundle_bytes = {}: from 1 to {} bytes",
                    nats.max_bundle_bytes,
                    crate::DEFAULT_MAX_COMPONENT_BYTES
                ));
            }
        }
        if config.max_connections == 0 || config.max_connections_per_address == 0 {
            return Err(
                "max_connections and max_connections_per_address must be at least 1".to_string(),
            );
        }
        if config.max_body_bytes == 0 {
            return Err("max_body_bytes must be at least 1".to_string());
        }
        Ok(())
    }

    /// The audit log's fsync policy.
    pub fn audit_fsync(&self) -> Result<FsyncPolicy, String> {
        self.audit
            .fsync
            .parse()
            .map_err(|e| format!("audit.fsync: {e}"))
    }

    /// The admin token, read from where `admin` says; `None` when no source
    /// is configured. A configured source that gives no token is an error:
    /// admin routes the operator asked for must not silently be off.
    pub fn admin_token(&self) -> Result<Option<crate::Secret>, String> {
        let token = match (&self.admin.token_env, &self.admin.token_file) {
            (Some(var), _) => std::env::var(var)
                .map_err(|_| format!("admin.token_env: the variable {var} is not set"))?,
            (None, Some(path)) => crate::files::read_bounded_text(path, 4096)
                .map_err(|e| format!("admin.token_file {}: {e}", path.display()))?,
            (None, None) => return Ok(None),
        };
        let token = token.trim();
        if token.len() < 16 {
            return Err("admin token: at least 16 characters".to_string());
        }
        Ok(Some(crate::Secret::new(token.to_string())))
    }

    /// Whether objects are kept in the workers' shared NATS bucket
    /// (`nats.shared_storage`) rather than in `storage_dir`.
    pub fn shares_store(&self) -> bool {
        self.nats.as_ref().is_some_and(|n| n.shared_storage)
    }

    /// This host's name as a worker of a task queue: `nats.worker_id`, or
    /// the machine's name with anything but letters, digits, `-` and `_`
    /// made `-`. `None` without a queue.
    pub fn worker_id(&self) -> Option<String> {
        let nats = self.nats.as_ref()?;
        Some(nats.worker_id.clone().unwrap_or_else(|| {
            let name = rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned();
            let name: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(64)
                .collect();
            if name.is_empty() {
                "worker".to_string()
            } else {
                name
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On loopback, only IP addresses, localhost and the allowed names
    /// pass (a rebound domain does not); elsewhere every name, unless names
    /// are listed.
    #[test]
    fn hosts_a_server_answers_for() {
        let local = ServeConfig::default();
        for ok in [
            "127.0.0.1:7878",
            "127.0.0.1",
            "[::1]:7878",
            "localhost:7878",
            "LocalHost.",
            "app.localhost:1",
            "10.0.0.5:80",
        ] {
            assert!(local.host_allowed(ok, true), "{ok}");
        }
        for no in [
            "evil.example:7878",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[evil]:1",
            "[::1]junk",
            "localhost:",
            "",
        ] {
            assert!(!local.host_allowed(no, true), "{no}");
        }
        let named = ServeConfig::from_toml("allowed_hosts = [\"chassis.internal\"]").unwrap();
        assert!(named.host_allowed("Chassis.Internal:443", true));
        assert!(!named.host_allowed("evil.example", true));
        let any = ServeConfig::from_toml("allowed_hosts = [\"*\"]").unwrap();
        assert!(any.host_allowed("evil.example", true));
        assert!(local.host_allowed("chassis.example.com", false));
        assert!(!named.host_allowed("chassis.example.com", false));
    }

    #[test]
    fn no_file_means_every_default_and_loopback() {
        let c = ServeConfig::from_toml("").unwrap();
        assert_eq!(c, ServeConfig::default());
        assert!(c.listen.ip().is_loopback());
        assert_eq!(
            c.audit_fsync().unwrap(),
            FsyncPolicy::Interval(Duration::from_millis(1000))
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = ServeConfig::from_toml("listen = \"nowhere\"").unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let e = ServeConfig::from_toml("shutdown_grace_seconds = 0").unwrap_err();
        assert!(e.contains("shutdown_grace_seconds"), "{e}");
        let e = ServeConfig::from_toml("[audit]\nfsync = \"sometimes\"").unwrap_err();
        assert!(e.contains("audit.fsync"), "{e}");
        for (toml, field) in [
            ("[audit]\nsegment_max_bytes = 10", "audit.segment_max_bytes"),
            (
                "[audit]\nsegment_max_age_seconds = 0",
                "audit.segment_max_age_seconds",
            ),
            (
                "[audit.retention]\naction = \"shred\"",
                "audit.retention.action",
            ),
            (
                "[audit.retention]\nkeep_segments = 0",
                "audit.retention.keep_segments",
            ),
            (
                "[audit.retention]\nkeep_days = -1",
                "audit.retention.keep_days",
            ),
        ] {
            let e = ServeConfig::from_toml(toml).unwrap_err();
            assert!(e.contains(field), "{toml}: {e}");
        }
        let kept = ServeConfig::from_toml(
            "[audit]\nsegment_max_bytes = 65536\n[audit.retention]\nkeep_days = 7\naction = \"delete\"",
        )
        .unwrap();
        let options = kept.audit.options().unwrap();
        assert_eq!(options.segment_max_bytes, 65536);
        assert_eq!(
            options.retention.keep_age,
            Some(Duration::from_secs(7 * 86_400))
        );
        assert!(options.retention.delete && options.retention.active());
        // A configuration built in code is checked too, rather than panic
        // on a duration no clock can add.
        let built = ServeConfig {
            shutdown_grace: Duration::MAX,
            ..Default::default()
        };
        assert!(
            built
                .check()
                .unwrap_err()
                .contains("shutdown_grace_seconds"),
            "{built:?}"
        );
        let e = ServeConfig::from_toml("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn the_admin_token_comes_from_one_source_and_is_long_enough() {
        assert!(ServeConfig::default().admin_token().unwrap().is_none());
        let e =
            ServeConfig::from_toml("[admin]\ntoken_env = \"A\"\ntoken_file = \"f\"").unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let unset =
            ServeConfig::from_toml("[admin]\ntoken_env = \"CHASSIS_TEST_UNSET_TOKEN\"").unwrap();
        let e = unset.admin_token().unwrap_err();
        assert!(e.contains("CHASSIS_TEST_UNSET_TOKEN"), "{e}");
        let dir = std::env::temp_dir().join(format!("chassis-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        let from_file = |text: &str| {
            std::fs::write(&file, text).unwrap();
            let mut c = ServeConfig::default();
            c.admin.token_file = Some(file.clone());
            c.admin_token()
        };
        assert!(from_file("short\n").unwrap_err().contains("16 characters"));
        let token = from_file("  0123456789abcdef-long\n").unwrap().unwrap();
        assert_eq!(token.expose(), "0123456789abcdef-long");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
