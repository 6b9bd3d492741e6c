//! One entry of containerd's mount list (`types.Mount` in JSON) and the bounded JSON reader.

use serde::{Deserialize, Deserializer, Serialize};

use super::MountListError;

/// The largest mount list [`parse_json`] reads, in bytes.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// The most entries [`parse_json`] accepts.
pub const MAX_ENTRIES: usize = 4096;

/// One mount as containerd hands it to a runtime: `{"type","source","target"?,"options"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountEntry {
    /// The mount type, transform prefixes included (`erofs`, `mkfs/ext4`,
    /// `format/mkdir/overlay`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The source: a file, a directory, `overlay`, or a template.
    pub source: String,
    /// A path inside the mount point; the snapshotter never sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Mount options, in order; `null` reads as none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub options: Vec<String>,
}

/// Go marshals a nil slice as `null`.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Reads a JSON array of mounts: at most [`MAX_JSON_BYTES`] bytes and [`MAX_ENTRIES`]
/// entries. An entry that is not a mount is named by its index.
pub fn parse_json(bytes: &[u8]) -> Result<Vec<MountEntry>, MountListError> {
    if bytes.len() > MAX_JSON_BYTES {
        return Err(MountListError::TooLarge {
            len: bytes.len(),
            max: MAX_JSON_BYTES,
        });
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| MountListError::Json {
            message: e.to_string(),
        })?;
    if values.len() > MAX_ENTRIES {
        return Err(MountListError::TooManyEntries {
            count: values.len(),
            max: MAX_ENTRIES,
        });
    }
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            MountEntry::deserialize(value).map_err(|e| MountListError::Entry {
                index,
                message: e.to_string(),
            })
        })
        .collect()
}
