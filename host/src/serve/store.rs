//! The service's store part: where swarms granted storage keep their
//! objects. With `nats.shared_storage`, the fleet's bucket, which every
//! worker sees ([`super::fleet::Fleet::shared_store`]); otherwise the
//! directory `storage_dir`. Only a swarm granted storage needs a store:
//! without one the others serve, and such a swarm is refused at load
//! (`/readyz` lists it) with the reason in the log.

use std::sync::Arc;

use super::{ServeConfig, ServeError, fleet::Fleet};
use crate::contract::StorageAccess;
use crate::{ChassisConfig, ServiceContract};

/// The object store the host is given, if any.
pub(super) struct Store(Option<Arc<dyn crate::storage::Store>>);

impl Store {
    /// The store `config` names for the contracts `parsed`: one that
    /// cannot be opened is an error only when one of them needs it.
    pub(super) async fn open(
        config: &ServeConfig,
        fleet: &Fleet,
        parsed: &[ServiceContract],
    ) -> Result<Self, ServeError> {
        let needs_store = parsed
            .iter()
            .any(|c| c.storage.access != StorageAccess::None);
        if let Some(shared) = fleet.shared_store(config, needs_store).await? {
            return Ok(Self(Some(shared)));
        }
        let Some(dir) = config
            .storage_dir
            .as_ref()
            .filter(|_| !config.shares_store())
        else {
            return Ok(Self(None));
        };
        match crate::storage::files::FileStore::open(dir) {
            Ok(store) => Ok(Self(Some(Arc::new(store)))),
            Err(e) if !needs_store => {
                tracing::warn!(target: "chassis::serve", "{e}; serving without an object store");
                Ok(Self(None))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Give the host the store.
    pub(super) fn configure(&self, host: ChassisConfig) -> ChassisConfig {
        match &self.0 {
            Some(store) => host.with_store(store.clone()),
            None => host,
        }
    }
}
