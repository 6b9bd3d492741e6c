//! Shared layers: one entry per layer key (algorithm + root hash, or digest without
//! verity), each with its own lock and the set of containers using it. The table's own
//! mutex is held only to find or drop an entry, never across kernel calls.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::sync::lock;

/// A mounted layer, as persisted in each container's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The sharing key: `<algorithm>-<root hash hex>` or `raw-<digest hex>`.
    pub key: String,
    /// The digest of the container that mounted it first.
    pub digest: String,
    /// Root hash in hex, empty without verity.
    pub root_hash: String,
    /// The dm-verity device's name, if any.
    pub dm_name: Option<String>,
    /// True when the agent made the `/dev/mapper` node (and so removes it).
    pub node_created: bool,
    /// The block device EROFS is mounted from.
    pub device: PathBuf,
    /// Where the EROFS filesystem is mounted.
    pub mount_dir: PathBuf,
    /// The dm-verity mapping of the device (as the first container set it up), `None`
    /// without verity.
    pub verity: Option<crate::plan::VerityParams>,
}

#[derive(Debug, Default)]
struct Slot {
    mounted: Option<LayerRecord>,
    users: BTreeSet<String>,
}

/// The layers mounted by the agent, reference-counted by container.
#[derive(Debug, Default)]
pub(crate) struct LayerTable {
    map: Mutex<HashMap<String, Arc<Mutex<Slot>>>>,
    /// Layers mounted now; kept beside the slots so that counting never waits on a slot
    /// whose layer is being set up (which can take the whole device timeout).
    mounted: AtomicUsize,
}

impl LayerTable {
    fn slot(&self, key: &str) -> Arc<Mutex<Slot>> {
        Arc::clone(lock(&self.map).entry(key.to_owned()).or_default())
    }

    /// Drops the entry for `key` when nobody holds or uses it.
    fn tidy(&self, key: &str) {
        let mut map = lock(&self.map);
        let unused = map.get(key).is_some_and(|s| {
            Arc::strong_count(s) == 1
                && s.try_lock()
                    .is_ok_and(|slot| slot.mounted.is_none() && slot.users.is_empty())
        });
        if unused {
            map.remove(key);
        }
    }

    /// Takes a reference on the layer `key` for `container`, mounting it with `setup` when
    /// nobody has it mounted. Returns the record and whether it was already mounted.
    pub(crate) fn acquire(
        &self,
        key: &str,
        container: &str,
        setup: impl FnOnce() -> Result<LayerRecord, AgentError>,
    ) -> Result<(LayerRecord, bool), AgentError> {
        let slot = self.slot(key);
        let result = {
            let mut s = lock(&slot);
            match &s.mounted {
                Some(rec) => {
                    let rec = rec.clone();
                    s.users.insert(container.to_owned());
                    Ok((rec, true))
                }
                None => match setup() {
                    Ok(rec) => {
                        s.mounted = Some(rec.clone());
                        self.mounted.fetch_add(1, Ordering::Relaxed);
                        s.users.insert(container.to_owned());
                        Ok((rec, false))
                    }
                    Err(e) => Err(e),
                },
            }
        };
        drop(slot);
        if result.is_err() {
            self.tidy(key);
        }
        result
    }

    /// Drops `container`'s reference on `key`; the last one tears the layer down with
    /// `teardown`. When teardown fails the layer stays recorded (unused) and the error is
    /// returned; the next `acquire` reuses it.
    pub(crate) fn release(
        &self,
        key: &str,
        container: &str,
        teardown: impl FnOnce(&LayerRecord) -> Result<(), AgentError>,
    ) -> Result<(), AgentError> {
        let slot = self.slot(key);
        let result = {
            let mut s = lock(&slot);
            s.users.remove(container);
            match (&s.mounted, s.users.is_empty()) {
                (Some(rec), true) => {
                    let r = teardown(rec);
                    if r.is_ok() {
                        s.mounted = None;
                        self.mounted.fetch_sub(1, Ordering::Relaxed);
                    }
                    r
                }
                _ => Ok(()),
            }
        };
        drop(slot);
        self.tidy(key);
        result
    }

    /// Records a layer found in persisted state as mounted and used by `container`.
    pub(crate) fn restore(&self, record: &LayerRecord, container: &str) {
        let slot = self.slot(&record.key);
        let mut s = lock(&slot);
        if s.mounted.is_none() {
            s.mounted = Some(record.clone());
            self.mounted.fetch_add(1, Ordering::Relaxed);
        }
        s.users.insert(container.to_owned());
    }

    /// Number of mounted layers.
    pub(crate) fn mounted(&self) -> usize {
        self.mounted.load(Ordering::Relaxed)
    }

    /// Containers using `key` (for tests and status).
    pub(crate) fn users(&self, key: &str) -> usize {
        let slot = lock(&self.map).get(key).cloned();
        slot.map_or(0, |s| lock(&s).users.len())
    }
}
