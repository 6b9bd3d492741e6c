//! overlayfs mount data for kernels without `lowerdir+` (before Linux 6.8): one option
//! string that must fit in a page, so the paths are short and relative to the container's
//! directory (`l/0:l/1:...`), as in Kata PR #13119.

use std::path::Path;

use crate::kernel::OverlaySpec;

/// Why the options cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayOptionsError {
    /// The option string does not fit the kernel's mount data page.
    #[error(
        "the overlay options for {layers} layers take {len} bytes; the kernel accepts at most \
         {max} (page size {page_size} minus the terminating NUL); this kernel has no lowerdir+ \
         (Linux 6.8)"
    )]
    TooLong {
        /// Layers in the overlay.
        layers: usize,
        /// Length of the option string.
        len: usize,
        /// Longest accepted.
        max: usize,
        /// The page size.
        page_size: usize,
    },
    /// A path has a character the option syntax cannot carry.
    #[error("overlay path {0:?} contains ',', ':', '\\\\' or a newline")]
    BadPath(String),
}

fn push_path(out: &mut String, p: &Path) -> Result<(), OverlayOptionsError> {
    let s = p.to_string_lossy();
    if s.contains([',', ':', '\\', '\n']) {
        return Err(OverlayOptionsError::BadPath(s.into_owned()));
    }
    out.push_str(&s);
    Ok(())
}

/// The legacy mount data:
/// `lowerdir=l/0:l/1,upperdir=upper/upper,workdir=upper/work[,volatile][,userxattr]`,
/// checked against `page_size` (the kernel copies at most one page, NUL included).
pub fn legacy_options(spec: &OverlaySpec, page_size: usize) -> Result<String, OverlayOptionsError> {
    let mut out = String::from("lowerdir=");
    for (i, lower) in spec.lowers.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        push_path(&mut out, lower)?;
    }
    out.push_str(",upperdir=");
    push_path(&mut out, &spec.upper)?;
    out.push_str(",workdir=");
    push_path(&mut out, &spec.work)?;
    if spec.options.volatile {
        out.push_str(",volatile");
    }
    if spec.options.userxattr {
        out.push_str(",userxattr");
    }
    let max = page_size.saturating_sub(1);
    if out.len() > max {
        return Err(OverlayOptionsError::TooLong {
            layers: spec.lowers.len(),
            len: out.len(),
            max,
            page_size,
        });
    }
    Ok(out)
}

/// The `fsconfig` calls for kernels with `lowerdir+` (6.8+): `(key, value)` pairs, one
/// `lowerdir+` per layer (top first) with absolute paths; flags as `(key, None)`.
pub fn fsconfig_params(spec: &OverlaySpec) -> Vec<(&'static str, Option<String>)> {
    let abs = |p: &Path| Some(spec.base.join(p).to_string_lossy().into_owned());
    let mut out: Vec<_> = spec.lowers.iter().map(|l| ("lowerdir+", abs(l))).collect();
    out.push(("upperdir", abs(&spec.upper)));
    out.push(("workdir", abs(&spec.work)));
    if spec.options.volatile {
        out.push(("volatile", None));
    }
    if spec.options.userxattr {
        out.push(("userxattr", None));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::plan::OverlayOptions;

    fn spec(layers: usize) -> OverlaySpec {
        OverlaySpec {
            base: PathBuf::from("/run/layerpass/containers/c1"),
            lowers: (0..layers)
                .map(|i| PathBuf::from(format!("l/{i}")))
                .collect(),
            upper: PathBuf::from("upper/upper"),
            work: PathBuf::from("upper/work"),
            options: OverlayOptions::default(),
        }
    }

    #[test]
    fn three_layers_top_first_with_flags() {
        let mut s = spec(3);
        s.options = OverlayOptions {
            volatile: true,
            userxattr: true,
        };
        assert_eq!(
            legacy_options(&s, 4096).unwrap(),
            "lowerdir=l/0:l/1:l/2,upperdir=upper/upper,workdir=upper/work,volatile,userxattr"
        );
    }

    #[test]
    fn one_hundred_twenty_eight_layers_fit_a_page() {
        let opts = legacy_options(&spec(128), 4096).unwrap();
        assert!(opts.len() < 1024, "{} bytes", opts.len());
        assert!(opts.starts_with("lowerdir=l/0:l/1:"));
        assert!(opts.contains(":l/127,upperdir="));
        // Even overlayfs' maximum stack fits with short names.
        assert!(legacy_options(&spec(500), 4096).is_ok());
    }

    #[test]
    fn too_long_is_a_clear_error() {
        let mut s = spec(128);
        s.lowers = (0..128)
            .map(|i| PathBuf::from(format!("/run/layerpass/layers/sha256-{i:064}")))
            .collect();
        let err = legacy_options(&s, 4096).unwrap_err();
        assert!(matches!(
            err,
            OverlayOptionsError::TooLong {
                layers: 128,
                max: 4095,
                ..
            }
        ));
        assert!(err.to_string().contains("128 layers"), "{err}");
    }

    #[test]
    fn commas_and_colons_are_refused() {
        let mut s = spec(1);
        s.lowers[0] = PathBuf::from("a:b");
        assert_eq!(
            legacy_options(&s, 4096),
            Err(OverlayOptionsError::BadPath("a:b".into()))
        );
    }

    #[test]
    fn fsconfig_params_use_absolute_paths_one_per_layer() {
        let p = fsconfig_params(&spec(128));
        assert_eq!(p.len(), 130);
        assert_eq!(
            p[0],
            ("lowerdir+", Some("/run/layerpass/containers/c1/l/0".into()))
        );
        assert_eq!(
            p[127].1.as_deref(),
            Some("/run/layerpass/containers/c1/l/127")
        );
        assert_eq!(
            p[129],
            (
                "workdir",
                Some("/run/layerpass/containers/c1/upper/work".into())
            )
        );
    }
}
