//! The redb store: table `meta` holds the schema version, table `exports` one JSON row per
//! export keyed `<sandbox>/<container>`. Every write is one transaction with redb's default
//! immediate durability (fsync at commit), so a `kill -9` loses nothing that was answered.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{ExportKey, ExportRecord, StateError};

/// The database's file name in the state directory.
pub const DB_FILE: &str = "state.redb";
/// The schema this build writes (and the newest it reads).
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const EXPORTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("exports");
const VERSION_KEY: &str = "schema_version";

/// The open database.
pub struct StateStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens (or creates) `<state_dir>/state.redb` and checks its schema version.
    pub fn open(state_dir: &Path) -> Result<Self, StateError> {
        let path = state_dir.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| StateError::Db {
            path: path.clone(),
            source: Box::new(e.into()),
        })?;
        let store = Self { db, path };
        store.check_schema()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, e: impl Into<redb::Error>) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    fn check_schema(&self) -> Result<(), StateError> {
        let tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.fail(e))?;
            let found = meta
                .get(VERSION_KEY)
                .map_err(|e| self.fail(e))?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert(VERSION_KEY, SCHEMA_VERSION)
                        .map_err(|e| self.fail(e))?;
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StateError::Schema {
                        path: self.path.clone(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
            }
            tx.open_table(EXPORTS).map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))
    }

    /// The schema version stored.
    pub fn schema_version(&self) -> Result<u64, StateError> {
        let tx = self.db.begin_read().map_err(|e| self.fail(e))?;
        let meta = tx.open_table(META).map_err(|e| self.fail(e))?;
        Ok(meta
            .get(VERSION_KEY)
            .map_err(|e| self.fail(e))?
            .map_or(SCHEMA_VERSION, |v| v.value()))
    }

    /// Stores `record` as a new row; `Ok(false)` (and nothing written) when its key exists.
    pub fn insert_new(&self, record: &ExportRecord) -> Result<bool, StateError> {
        let key = record.key.db_key();
        let value = serde_json::to_vec(record).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            key: key.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut t = tx.open_table(EXPORTS).map_err(|e| self.fail(e))?;
            if t.get(key.as_str()).map_err(|e| self.fail(e))?.is_some() {
                return Ok(false);
            }
            t.insert(key.as_str(), value.as_slice())
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(true)
    }

    /// Removes a row; whether it was there.
    pub fn remove(&self, key: &ExportKey) -> Result<bool, StateError> {
        let tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        let existed = {
            let mut t = tx.open_table(EXPORTS).map_err(|e| self.fail(e))?;
            t.remove(key.db_key().as_str())
                .map_err(|e| self.fail(e))?
                .is_some()
        };
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(existed)
    }

    /// Every export, in key order.
    pub fn all(&self) -> Result<Vec<ExportRecord>, StateError> {
        let tx = self.db.begin_read().map_err(|e| self.fail(e))?;
        let t = tx.open_table(EXPORTS).map_err(|e| self.fail(e))?;
        let mut out = Vec::new();
        for row in t.iter().map_err(|e| self.fail(e))? {
            let (k, v) = row.map_err(|e| self.fail(e))?;
            let record: ExportRecord =
                serde_json::from_slice(v.value()).map_err(|e| StateError::Corrupt {
                    path: self.path.clone(),
                    key: k.value().to_owned(),
                    reason: e.to_string(),
                })?;
            if record.key.db_key() != k.value() {
                return Err(StateError::Corrupt {
                    path: self.path.clone(),
                    key: k.value().to_owned(),
                    reason: format!("the row holds export {}", record.key),
                });
            }
            out.push(record);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DiskBacking, DiskRecord, DiskRole, SourceRecord, StateLock};

    fn record(sandbox: &str, container: &str) -> ExportRecord {
        ExportRecord {
            key: ExportKey {
                sandbox: sandbox.into(),
                container: container.into(),
            },
            source: SourceRecord::Image {
                path: "/img".into(),
                platform: None,
            },
            disks: vec![DiskRecord {
                role: DiskRole::Layer,
                socket: "/run/x.sock".into(),
                serial: "lp0".into(),
                size: 8192,
                read_only: true,
                node: Some(("/store/block/devices/lp0".into(), 3)),
                backing: DiskBacking::Layer {
                    index: None,
                    blob: "/b".into(),
                    tree: None,
                    block_size: None,
                },
            }],
            plan_json: "{}".into(),
            guest: Some("unix:/g.sock".into()),
            root_hashes: vec!["ab".repeat(32)],
            created_unix: 1,
        }
    }

    #[test]
    fn rows_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            assert!(s.insert_new(&record("s1", "c1")).unwrap());
            assert!(s.insert_new(&record("s1", "c2")).unwrap());
            assert!(
                !s.insert_new(&record("s1", "c1")).unwrap(),
                "a duplicate is refused"
            );
            assert!(s.remove(&record("s1", "c2").key).unwrap());
            assert!(!s.remove(&record("s1", "c2").key).unwrap());
        }
        let s = StateStore::open(dir.path()).unwrap();
        assert_eq!(s.all().unwrap(), vec![record("s1", "c1")]);
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = StateStore::open(dir.path()).unwrap();
            let tx = s.db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert(VERSION_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let e = StateStore::open(dir.path()).unwrap_err();
        assert!(matches!(e, StateError::Schema { found: 2, .. }), "{e}");
    }

    #[test]
    fn a_corrupt_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let tx = s.db.begin_write().unwrap();
        tx.open_table(EXPORTS)
            .unwrap()
            .insert("s/c", b"not json".as_slice())
            .unwrap();
        tx.commit().unwrap();
        let e = s.all().unwrap_err().to_string();
        assert!(e.contains("export s/c"), "{e}");
    }

    #[test]
    fn a_second_holder_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        let e = StateLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())) && e.contains("in use"),
            "{e}"
        );
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }
}
