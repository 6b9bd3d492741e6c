//! The shape of a mount list: an optional block image first, the `erofs` layers, and a
//! final overlay (or bind) that names each layer exactly once.

use std::path::PathBuf;

use super::options::{OverlayOpts, block_options, erofs_verity, host_path, overlay_options};
use super::template::{Piece, expand, has_template};
use super::{
    ContainerdLayer, ContainerdRootfs, ContainerdUpper, MountEntry, MountListError, OverlayOptions,
};

/// What a mount type is, transforms included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `erofs`: one layer.
    Erofs,
    /// `mkfs/ext4` (`create`) or an activated `ext4`: the writable block image.
    Block { create: bool },
    /// `[format/][mkdir/]overlay`.
    Overlay { mkdir: bool },
    /// `[format/][mkdir/]bind`.
    Bind { mkdir: bool },
}

fn classify(kind: &str) -> Option<Class> {
    match kind {
        "erofs" => return Some(Class::Erofs),
        "ext4" => return Some(Class::Block { create: false }),
        "mkfs/ext4" => return Some(Class::Block { create: true }),
        _ => {}
    }
    let rest = kind.strip_prefix("format/").unwrap_or(kind);
    let (mkdir, base) = match rest.strip_prefix("mkdir/") {
        Some(base) => (true, base),
        None => (false, rest),
    };
    match base {
        "overlay" => Some(Class::Overlay { mkdir }),
        "bind" => Some(Class::Bind { mkdir }),
        _ => None,
    }
}

/// The list as read so far.
struct List<'a> {
    mounts: &'a [MountEntry],
    classes: Vec<Class>,
    /// The layers in list order (so sorted by `mount_index`).
    layers: Vec<ContainerdLayer>,
    /// The block image's index and upper.
    block: Option<(usize, ContainerdUpper)>,
}

/// Checks a containerd mount list and returns its layers (in `lowerdir` order) and upper.
/// Pure: nothing on the host is looked at.
pub fn parse(mounts: &[MountEntry]) -> Result<ContainerdRootfs, MountListError> {
    let Some(last) = mounts.len().checked_sub(1) else {
        return Err(MountListError::Empty);
    };
    let mut list = List {
        mounts,
        classes: Vec::with_capacity(mounts.len()),
        layers: Vec::new(),
        block: None,
    };
    let mut fin = None;
    for (index, m) in mounts.iter().enumerate() {
        if fin.is_some() {
            return Err(MountListError::MountAfterOverlay {
                index,
                kind: m.kind.clone(),
            });
        }
        let class = classify(&m.kind).ok_or_else(|| MountListError::UnknownType {
            index,
            kind: m.kind.clone(),
        })?;
        if let Some(t) = m.target.as_ref().filter(|t| !t.is_empty()) {
            return Err(MountListError::Target {
                index,
                text: t.clone(),
            });
        }
        match class {
            Class::Erofs => {
                let blob = host_path(index, &m.source)?;
                let verity = erofs_verity(index, &m.kind, &m.source, &m.options)?;
                list.layers.push(ContainerdLayer {
                    blob,
                    verity,
                    mount_index: index,
                });
            }
            Class::Block { create } => {
                if list.block.is_some() {
                    return Err(MountListError::SecondUpper {
                        index,
                        text: m.source.clone(),
                    });
                }
                if index != 0 {
                    return Err(MountListError::UpperNotFirst {
                        index,
                        text: m.source.clone(),
                    });
                }
                let path = host_path(index, &m.source)?;
                let create = block_options(index, &m.kind, create, &m.options)?;
                let fs_type = "ext4".to_owned();
                list.block = Some((
                    index,
                    ContainerdUpper::BlockImage {
                        path,
                        fs_type,
                        create,
                    },
                ));
            }
            Class::Overlay { .. } | Class::Bind { .. } => fin = Some(index),
        }
        list.classes.push(class);
    }
    if list.layers.is_empty() {
        return Err(MountListError::NoLayers {
            index: last,
            kind: mounts[last].kind.clone(),
        });
    }
    match fin.map(|f| (f, list.classes[f])) {
        None if mounts.len() == 1 => Ok(ContainerdRootfs {
            layers: list.layers,
            upper: ContainerdUpper::ReadOnly,
            overlay: OverlayOptions::default(),
        }),
        None => Err(MountListError::NoOverlay {
            index: last,
            kind: mounts[last].kind.clone(),
        }),
        Some((f, Class::Bind { .. })) => list.bind(f),
        Some((f, Class::Overlay { mkdir })) => list.overlay(f, mkdir),
        // `fin` is only ever set on an overlay or a bind.
        Some((f, _)) => Err(MountListError::UnknownType {
            index: f,
            kind: mounts[f].kind.clone(),
        }),
    }
}

impl List<'_> {
    /// The layers `pieces` (`text`, of mount `index`) name: references separated by `:`,
    /// each an erofs mount, each erofs mount exactly once. Returns their indices in order.
    fn layer_order(
        &self,
        index: usize,
        text: &str,
        pieces: &[Piece<'_>],
    ) -> Result<Vec<usize>, MountListError> {
        let not_layers = || MountListError::LowerdirNotLayers {
            index,
            text: text.to_owned(),
        };
        let mut order = Vec::new();
        let mut seen = vec![false; self.classes.len()];
        let mut want_ref = true;
        for &piece in pieces {
            match (want_ref, piece) {
                (false, Piece::Text(":")) => want_ref = true,
                (false, _) | (true, Piece::Text(_)) => return Err(not_layers()),
                (true, reference) => {
                    for i in reference.mounts() {
                        if self.classes[i] != Class::Erofs {
                            return Err(MountListError::TemplateNotLayer {
                                index,
                                text: text.to_owned(),
                                mount: i,
                                kind: self.mounts[i].kind.clone(),
                            });
                        }
                        if std::mem::replace(&mut seen[i], true) {
                            return Err(MountListError::DuplicateLayer {
                                index,
                                text: text.to_owned(),
                                mount: i,
                            });
                        }
                        order.push(i);
                    }
                    want_ref = false;
                }
            }
        }
        if want_ref {
            return Err(not_layers());
        }
        if let Some(missing) = self.layers.iter().find(|l| !seen[l.mount_index]) {
            return Err(MountListError::MissingLayer {
                index,
                text: text.to_owned(),
                mount: missing.mount_index,
            });
        }
        Ok(order)
    }

    /// The layers of `order`, from the list.
    fn ordered(&self, order: &[usize]) -> Vec<ContainerdLayer> {
        order
            .iter()
            .filter_map(|&i| {
                self.layers
                    .binary_search_by_key(&i, |l| l.mount_index)
                    .ok()
                    .map(|at| self.layers[at].clone())
            })
            .collect()
    }

    /// A block image the final mount does not use.
    fn unused_block(&self) -> Result<(), MountListError> {
        match &self.block {
            Some((b, _)) => Err(MountListError::UnusedUpper {
                index: *b,
                text: self.mounts[*b].source.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A final `[format/]bind` of the single layer (`{{ mount N }}`, read-only): what
    /// containerd returns for a view whose one lower is an fsmeta image; accepted for a
    /// plain layer too.
    fn bind(&self, f: usize) -> Result<ContainerdRootfs, MountListError> {
        let m = &self.mounts[f];
        for text in &m.options {
            match text.as_str() {
                "ro" | "rbind" | "bind" => {}
                "rw" => {
                    return Err(MountListError::MisplacedOption {
                        index: f,
                        kind: m.kind.clone(),
                        text: text.clone(),
                        reason: "a bind of a layer is read-only",
                    });
                }
                _ if text.starts_with("X-containerd.mkdir.") => {
                    return Err(MountListError::MisplacedOption {
                        index: f,
                        kind: m.kind.clone(),
                        text: text.clone(),
                        reason: "a bind of a layer has no upper to create directories in",
                    });
                }
                _ if text.starts_with("uidmap=") || text.starts_with("gidmap=") => {
                    return Err(MountListError::IdMapped {
                        index: f,
                        text: text.clone(),
                    });
                }
                _ if text.starts_with("X-containerd.") => {
                    return Err(MountListError::UnknownContainerdOption {
                        index: f,
                        text: text.clone(),
                    });
                }
                _ => {
                    return Err(MountListError::UnknownOption {
                        index: f,
                        kind: "bind".to_owned(),
                        text: text.clone(),
                    });
                }
            }
        }
        let pieces = expand(&m.source, f)?;
        if !matches!(pieces.as_slice(), [Piece::Mount(_)]) {
            return Err(MountListError::BindNotOneLayer {
                index: f,
                text: m.source.clone(),
            });
        }
        let order = self.layer_order(f, &m.source, &pieces)?;
        self.unused_block()?;
        Ok(ContainerdRootfs {
            layers: self.ordered(&order),
            upper: ContainerdUpper::ReadOnly,
            overlay: OverlayOptions::default(),
        })
    }

    /// The final overlay.
    fn overlay(&self, f: usize, mkdir: bool) -> Result<ContainerdRootfs, MountListError> {
        let m = &self.mounts[f];
        if has_template(&m.source) {
            return Err(MountListError::TemplateNotAllowed {
                index: f,
                text: m.source.clone(),
            });
        }
        let opts = overlay_options(f, &m.kind, mkdir, &m.options)?;
        let (lower_text, lower) =
            opts.lowerdir
                .as_ref()
                .ok_or_else(|| MountListError::MissingOption {
                    index: f,
                    kind: m.kind.clone(),
                    option: "lowerdir=",
                })?;
        let order = self.layer_order(f, lower_text, lower)?;
        let upper = self.upper(f, &opts)?;
        let misplaced = |text: &str, reason| MountListError::MisplacedOption {
            index: f,
            kind: m.kind.clone(),
            text: text.to_owned(),
            reason,
        };
        match (&upper, opts.ro, opts.rw) {
            (ContainerdUpper::ReadOnly, _, Some(rw)) => {
                return Err(misplaced(rw, "an overlay without an upper is read-only"));
            }
            (ContainerdUpper::BlockImage { .. } | ContainerdUpper::HostDir { .. }, Some(ro), _) => {
                return Err(misplaced(ro, "the container's upper cannot be read-only"));
            }
            _ => {}
        }
        Ok(ContainerdRootfs {
            layers: self.ordered(&order),
            upper,
            overlay: OverlayOptions {
                volatile: opts.volatile,
                userxattr: opts.userxattr,
            },
        })
    }

    /// The overlay's upper: the block image (its `/upper` and `/work`), host directories,
    /// or none.
    fn upper(&self, f: usize, opts: &OverlayOpts<'_>) -> Result<ContainerdUpper, MountListError> {
        let kind = &self.mounts[f].kind;
        let missing = |option| MountListError::MissingOption {
            index: f,
            kind: kind.clone(),
            option,
        };
        for (text, pieces) in &opts.mkdirs {
            self.in_block(f, text, pieces, &["/upper", "/work"])?;
        }
        match (&self.block, opts.upperdir, opts.workdir) {
            (_, Some(_), None) => Err(missing("workdir=")),
            (_, None, Some(_)) => Err(missing("upperdir=")),
            (Some(_), None, None) => {
                self.unused_block()?;
                Ok(ContainerdUpper::ReadOnly)
            }
            (None, None, None) => Ok(ContainerdUpper::ReadOnly),
            (Some((_, block)), Some((ut, uv)), Some((wt, wv))) => {
                self.in_block(f, ut, &expand(uv, f)?, &["/upper"])?;
                self.in_block(f, wt, &expand(wv, f)?, &["/work"])?;
                Ok(block.clone())
            }
            (None, Some((ut, uv)), Some((wt, wv))) => {
                let upperdir = self.host_dir(f, ut, uv)?;
                let workdir = self.host_dir(f, wt, wv)?;
                if upperdir == workdir {
                    return Err(MountListError::BadUpper {
                        index: f,
                        text: wt.to_owned(),
                        reason: "workdir and upperdir are the same directory".to_owned(),
                    });
                }
                Ok(ContainerdUpper::HostDir { upperdir, workdir })
            }
        }
    }

    /// A host directory of the upper (`text`, value `value`): an absolute path, no template.
    fn host_dir(&self, f: usize, text: &str, value: &str) -> Result<PathBuf, MountListError> {
        if has_template(value) {
            // Report what the template names: a template upper needs a block image.
            let named = expand(value, f)?
                .into_iter()
                .flat_map(Piece::mounts)
                .next()
                .map_or_else(
                    || "holds a template".to_owned(),
                    |i| format!("names mount {i}, a {:?} mount", self.mounts[i].kind),
                );
            return Err(MountListError::BadUpper {
                index: f,
                text: text.to_owned(),
                reason: format!(
                    "{named}; a templated upper must be in a block image, and the list has none"
                ),
            });
        }
        host_path(f, value)
    }

    /// Checks `pieces` (of `text`, an option of mount `f`) are `{{ mount B }}<sub>` with `B`
    /// the block image and `sub` one of `subs`.
    fn in_block(
        &self,
        f: usize,
        text: &str,
        pieces: &[Piece<'_>],
        subs: &[&str],
    ) -> Result<(), MountListError> {
        let bad = |reason: String| MountListError::BadUpper {
            index: f,
            text: text.to_owned(),
            reason,
        };
        let Some((b, _)) = self.block else {
            return Err(bad(
                "a directory of the upper must be inside a block image, and the list has none"
                    .to_owned(),
            ));
        };
        match pieces {
            [Piece::Mount(i), Piece::Text(sub)] if *i == b && subs.contains(sub) => Ok(()),
            [Piece::Mount(i), ..] if *i != b => Err(bad(format!(
                "names mount {i}, a {:?} mount, not the block image (mount {b})",
                self.mounts[*i].kind
            ))),
            _ => Err(bad(format!(
                "must be {} (the block image is mount {b})",
                subs.iter()
                    .map(|s| format!("{{{{ mount {b} }}}}{s}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))),
        }
    }
}
