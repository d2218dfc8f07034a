//! The service's audit part: the audit log of `[audit]`, if there is one.
//! Opened first (a bad path is refused before anything is made on a NATS
//! server), it is the host's last event sink; swarms loaded are given
//! their history from the writer's state ([`Audit::restore`]), and the
//! log is closed, with a final fsync, when the server stops.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ServeConfig, ServeError};
use crate::audit::AuditLog;
use crate::{Chassis, ChassisConfig, ServiceContract};

/// The audit log, and turns at reading its end for `/v1/audit`.
pub(super) struct Audit {
    log: Option<Arc<AuditLog>>,
    /// One read of the log's end at a time.
    reads: Arc<tokio::sync::Semaphore>,
}

impl Audit {
    /// Open the log of `config.audit` (none without a path). The swarms of
    /// a log written before records named their settings are judged by
    /// the contracts about to be loaded, `parsed`.
    pub(super) fn open(
        config: &ServeConfig,
        parsed: &[ServiceContract],
    ) -> Result<Self, ServeError> {
        let log = match &config.audit.path {
            Some(path) => {
                let mut options = config
                    .audit
                    .options()
                    .map_err(|reason| error(path, reason))?;
                options.worker = config.worker_id();
                options.contracts = parsed
                    .iter()
                    .map(|c| (c.swarm_id.clone(), c.health_settings()))
                    .collect();
                Some(AuditLog::open_with(path, options).map_err(|e| error(path, e.to_string()))?)
            }
            None => None,
        };
        Ok(Self {
            log,
            reads: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    /// The log, if there is one.
    pub(super) fn log(&self) -> Option<&Arc<AuditLog>> {
        self.log.as_ref()
    }

    /// A turn at reading the log's end; `None` once the server stops.
    pub(super) async fn read_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.reads.clone().acquire_owned().await.ok()
    }

    /// Make the log the host's audit sink.
    pub(super) fn configure(&self, host: ChassisConfig) -> ChassisConfig {
        match &self.log {
            Some(log) => host.with_audit_log(log.clone()),
            None => host,
        }
    }

    /// Carry SLO figures, reputation and quarantine over from the audit
    /// log to swarms just loaded: the log's writer holds every swarm's
    /// state as a replay of the log gives it (restored from its newest
    /// checkpoint when it was opened, and kept since), so nothing is read.
    pub(super) async fn restore(
        &self,
        chassis: &Chassis,
        loaded: &[String],
    ) -> Result<(), ServeError> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        for id in loaded {
            let (writer, swarm) = (log.clone(), id.clone());
            let history = tokio::task::spawn_blocking(move || writer.history(&swarm))
                .await
                .map_err(|e| error(log.path(), e.to_string()))?;
            if let Some(history) = history {
                chassis.restore_history(history)?;
            }
        }
        Ok(())
    }

    /// Close the log (a final fsync), returning where it is.
    pub(super) fn close(&self) -> Result<Option<PathBuf>, ServeError> {
        let Some(log) = &self.log else {
            return Ok(None);
        };
        log.close().map_err(|e| error(log.path(), e.to_string()))?;
        Ok(Some(log.path().to_path_buf()))
    }
}

fn error(path: &Path, reason: String) -> ServeError {
    ServeError::Audit {
        path: path.to_path_buf(),
        reason,
    }
}
