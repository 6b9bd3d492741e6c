//! Paths and the options of each mount type: what an `erofs` layer, a block image and the
//! final overlay may carry.

use std::path::PathBuf;

use super::template::{Piece, expand, has_template};
use super::{BlockCreate, LayerVerity, MountListError};

const DMVERITY: &str = "X-containerd.dmverity=";
const MKFS: &str = "X-containerd.mkfs.";
const MKDIR: &str = "X-containerd.mkdir.";
const CONTAINERD: &str = "X-containerd.";

/// Overlay options the kernel takes that do not change what the daemon builds.
const HARMLESS_OVERLAY: [&str; 5] = [
    "index=",
    "metacopy=",
    "redirect_dir=",
    "xino=",
    "nfs_export=",
];

/// A host path: absolute, no NUL, no `..` component, no template.
pub(crate) fn host_path(index: usize, text: &str) -> Result<PathBuf, MountListError> {
    let bad = |reason| MountListError::BadPath {
        index,
        text: text.to_owned(),
        reason,
    };
    if has_template(text) {
        return Err(MountListError::TemplateNotAllowed {
            index,
            text: text.to_owned(),
        });
    }
    if !text.starts_with('/') {
        return Err(bad("is not absolute"));
    }
    if text.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if text.split('/').any(|c| c == "..") {
        return Err(bad("has a `..` component"));
    }
    Ok(PathBuf::from(text))
}

/// An option of the `X-containerd.` family that does not belong where it was found: a known
/// family is misplaced, anything else unknown.
fn containerd_option(index: usize, kind: &str, text: &str) -> MountListError {
    let misplaced = |reason| MountListError::MisplacedOption {
        index,
        kind: kind.to_owned(),
        text: text.to_owned(),
        reason,
    };
    if text.starts_with(DMVERITY) {
        misplaced("dm-verity belongs on an erofs layer")
    } else if text.starts_with(MKFS) {
        misplaced("mkfs options belong on a `mkfs/` mount")
    } else if text.starts_with(MKDIR) {
        misplaced("mkdir options need a `mkdir/` transform in the type")
    } else {
        MountListError::UnknownContainerdOption {
            index,
            text: text.to_owned(),
        }
    }
}

/// The options every type refuses the same way: templates where none may be, the fsmeta
/// form, idmapped mounts, and unknown `X-containerd.` options.
fn refuse_common(index: usize, kind: &str, text: &str) -> Result<(), MountListError> {
    if text.starts_with("uidmap=") || text.starts_with("gidmap=") {
        return Err(MountListError::IdMapped {
            index,
            text: text.to_owned(),
        });
    }
    if text.starts_with(CONTAINERD) {
        return Err(containerd_option(index, kind, text));
    }
    Ok(())
}

/// The options of an `erofs` layer: `ro`, `loop`, `X-containerd.dmverity=`.
pub(crate) fn erofs_verity(
    index: usize,
    kind: &str,
    blob: &str,
    options: &[String],
) -> Result<LayerVerity, MountListError> {
    let mut verity = None;
    for text in options {
        if has_template(text) {
            return Err(MountListError::TemplateNotAllowed {
                index,
                text: text.clone(),
            });
        }
        match text.as_str() {
            "ro" | "loop" => continue,
            "rw" => {
                return Err(MountListError::MisplacedOption {
                    index,
                    kind: kind.to_owned(),
                    text: text.clone(),
                    reason: "an erofs layer is read-only",
                });
            }
            _ => {}
        }
        if let Some(value) = text.strip_prefix(DMVERITY) {
            if verity.is_some() {
                return Err(MountListError::DuplicateOption {
                    index,
                    text: text.clone(),
                });
            }
            verity = Some(match value {
                "off" => LayerVerity::Off,
                "on" => LayerVerity::Sidecar(PathBuf::from(format!("{blob}.dmverity"))),
                path => LayerVerity::Sidecar(host_path(index, path)?),
            });
            continue;
        }
        if text.starts_with("device=") {
            return Err(MountListError::Fsmeta {
                index,
                text: text.clone(),
            });
        }
        refuse_common(index, kind, text)?;
        return Err(MountListError::UnknownOption {
            index,
            kind: kind.to_owned(),
            text: text.clone(),
        });
    }
    Ok(verity.unwrap_or(LayerVerity::Off))
}

/// The options of a block image: `rw`, `loop`, and for `mkfs/ext4` (`create`)
/// `X-containerd.mkfs.{size,fs,uuid}`. Returns the creation parameters of `mkfs/ext4`.
pub(crate) fn block_options(
    index: usize,
    kind: &str,
    create: bool,
    options: &[String],
) -> Result<Option<BlockCreate>, MountListError> {
    let (mut size, mut fs, mut uuid) = (None, None, None);
    for text in options {
        if has_template(text) {
            return Err(MountListError::TemplateNotAllowed {
                index,
                text: text.clone(),
            });
        }
        let bad_value = |reason| MountListError::BadOptionValue {
            index,
            text: text.clone(),
            reason,
        };
        let once = |given: bool| match given {
            true => Err(MountListError::DuplicateOption {
                index,
                text: text.clone(),
            }),
            false => Ok(()),
        };
        match text.as_str() {
            "rw" | "loop" => continue,
            "ro" => {
                return Err(MountListError::MisplacedOption {
                    index,
                    kind: kind.to_owned(),
                    text: text.clone(),
                    reason: "the writable upper cannot be read-only",
                });
            }
            _ => {}
        }
        if let (true, Some(key)) = (create, text.strip_prefix(MKFS)) {
            if let Some(v) = key.strip_prefix("size=") {
                once(size.is_some())?;
                size = Some(mkfs_size(v).ok_or_else(|| {
                    bad_value("not a size in bytes (digits, optionally k/m/g/t/p with i and b)")
                })?);
                if size == Some(0) {
                    return Err(bad_value("the size must be at least 1 byte"));
                }
            } else if let Some(v) = key.strip_prefix("fs=") {
                once(fs.is_some())?;
                if v != "ext4" {
                    return Err(bad_value("only ext4 block images are supported"));
                }
                fs = Some(());
            } else if let Some(v) = key.strip_prefix("uuid=") {
                once(uuid.is_some())?;
                uuid::Uuid::try_parse(v).map_err(|_| bad_value("not a UUID"))?;
                uuid = Some(v.to_owned());
            } else {
                return Err(MountListError::UnknownContainerdOption {
                    index,
                    text: text.clone(),
                });
            }
            continue;
        }
        if !create && text.starts_with(MKFS) {
            return Err(MountListError::MisplacedOption {
                index,
                kind: kind.to_owned(),
                text: text.clone(),
                reason: "the image is already created",
            });
        }
        refuse_common(index, kind, text)?;
        return Err(MountListError::UnknownOption {
            index,
            kind: kind.to_owned(),
            text: text.clone(),
        });
    }
    if !create {
        return Ok(None);
    }
    let size = size.ok_or_else(|| MountListError::MissingOption {
        index,
        kind: kind.to_owned(),
        option: "X-containerd.mkfs.size",
    })?;
    Ok(Some(BlockCreate { size, uuid }))
}

/// `X-containerd.mkfs.size`, as containerd reads it (`units.RAMInBytes`), integers only:
/// digits, an optional space, then an optional `k`/`m`/`g`/`t`/`p` (powers of 1024), `i`
/// and `b` in any case. `None` if malformed or past `u64::MAX`.
pub(crate) fn mkfs_size(v: &str) -> Option<u64> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = v.get(..digits).filter(|d| !d.is_empty())?.parse().ok()?;
    let mut unit = v.get(digits..)?.as_bytes();
    if let [b' ', rest @ ..] = unit {
        unit = rest;
    }
    let mut shift = 0;
    if let [u, rest @ ..] = unit
        && let Some(p) = b"kmgtp".iter().position(|c| c == &u.to_ascii_lowercase())
    {
        shift = 10 * (p as u32 + 1);
        unit = rest;
    }
    if let [b'i' | b'I', rest @ ..] = unit {
        unit = rest;
    }
    if let [b'b' | b'B', rest @ ..] = unit {
        unit = rest;
    }
    if !unit.is_empty() {
        return None;
    }
    n.checked_mul(1u64.checked_shl(shift)?)
}

/// The options of the final overlay, sorted but not yet checked against the list.
#[derive(Debug, Default)]
pub(crate) struct OverlayOpts<'a> {
    /// `lowerdir=` (the whole option) and its pieces.
    pub lowerdir: Option<(&'a str, Vec<Piece<'a>>)>,
    /// `upperdir=` (the whole option) and its value.
    pub upperdir: Option<(&'a str, &'a str)>,
    /// `workdir=` (the whole option) and its value.
    pub workdir: Option<(&'a str, &'a str)>,
    /// Each `X-containerd.mkdir.path=` (the whole option) with its directory's pieces.
    pub mkdirs: Vec<(&'a str, Vec<Piece<'a>>)>,
    /// `ro` (the option) if given.
    pub ro: Option<&'a str>,
    /// `rw` (the option) if given.
    pub rw: Option<&'a str>,
    pub volatile: bool,
    pub userxattr: bool,
}

/// Sorts the final overlay's options; `mkdir` says whether the type has the `mkdir/`
/// transform.
pub(crate) fn overlay_options<'a>(
    index: usize,
    kind: &str,
    mkdir: bool,
    options: &'a [String],
) -> Result<OverlayOpts<'a>, MountListError> {
    let mut o = OverlayOpts::default();
    for text in options {
        let text = text.as_str();
        let dup = || MountListError::DuplicateOption {
            index,
            text: text.to_owned(),
        };
        if let Some(v) = text.strip_prefix("lowerdir=") {
            if o.lowerdir.is_some() {
                return Err(dup());
            }
            o.lowerdir = Some((text, expand(v, index)?));
        } else if let Some(v) = text.strip_prefix("upperdir=") {
            if o.upperdir.replace((text, v)).is_some() {
                return Err(dup());
            }
        } else if let Some(v) = text.strip_prefix("workdir=") {
            if o.workdir.replace((text, v)).is_some() {
                return Err(dup());
            }
        } else if let (true, Some(v)) = (mkdir, text.strip_prefix(MKDIR)) {
            let v =
                v.strip_prefix("path=")
                    .ok_or_else(|| MountListError::UnknownContainerdOption {
                        index,
                        text: text.to_owned(),
                    })?;
            o.mkdirs.push((text, mkdir_dir(index, text, v)?));
        } else if text == "ro" {
            o.ro = Some(text);
        } else if text == "rw" {
            o.rw = Some(text);
        } else if text == "volatile" {
            o.volatile = true;
        } else if text == "userxattr" {
            o.userxattr = true;
        } else if HARMLESS_OVERLAY.iter().any(|p| text.starts_with(p)) {
            if has_template(text) {
                return Err(MountListError::TemplateNotAllowed {
                    index,
                    text: text.to_owned(),
                });
            }
        } else {
            refuse_common(index, kind, text)?;
            return Err(MountListError::UnknownOption {
                index,
                kind: "overlay".to_owned(),
                text: text.to_owned(),
            });
        }
    }
    Ok(o)
}

/// `X-containerd.mkdir.path=dir[:mode[:uid:gid]]` as containerd reads it after formatting:
/// returns the pieces of `dir`, after checking the mode (octal, permission bits only) and
/// the owner (decimal). `text` is the whole option.
fn mkdir_dir<'a>(
    index: usize,
    text: &'a str,
    value: &'a str,
) -> Result<Vec<Piece<'a>>, MountListError> {
    let bad = |reason| MountListError::BadOptionValue {
        index,
        text: text.to_owned(),
        reason,
    };
    let mut pieces = expand(value, index)?;
    // containerd splits the formatted string at `:`; a range of several mounts formats to
    // mount points joined by `:`, which containerd would read as a mode.
    if pieces.iter().any(|p| matches!(p, Piece::Overlay { .. })) {
        return Err(bad("a mkdir path cannot name a range of mounts"));
    }
    let Some(&Piece::Text(last)) = pieces.last() else {
        return Ok(pieces);
    };
    let Some((dir, tail)) = last.split_once(':') else {
        return Ok(pieces);
    };
    if pieces[..pieces.len() - 1]
        .iter()
        .any(|p| matches!(p, Piece::Text(t) if t.contains(':')))
    {
        return Err(bad("a mkdir path cannot contain `:`"));
    }
    let parts: Vec<&str> = tail.split(':').collect();
    let (mode, owner) = match parts.as_slice() {
        [mode] => (*mode, None),
        [mode, uid, gid] => (*mode, Some((*uid, *gid))),
        _ => return Err(bad("expected dir[:mode[:uid:gid]]")),
    };
    match u32::from_str_radix(mode, 8) {
        Ok(m) if m <= 0o777 && !mode.starts_with('+') => {}
        _ => return Err(bad("the mode must be octal permission bits (at most 0777)")),
    }
    if let Some((uid, gid)) = owner {
        for id in [uid, gid] {
            if id.is_empty()
                || !id.bytes().all(|b| b.is_ascii_digit())
                || id.parse::<u32>().is_err()
            {
                return Err(bad("the owner must be decimal uid:gid"));
            }
        }
    }
    let n = pieces.len();
    match dir.is_empty() {
        true => {
            pieces.truncate(n - 1);
        }
        false => pieces[n - 1] = Piece::Text(dir),
    }
    Ok(pieces)
}
