//! Choosing one image manifest among several by platform.

use super::error::ImageError;
use super::platform::Platform;

/// A manifest that could be chosen.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    pub platform: Option<Platform>,
    /// How the candidate is named in messages (digest, tags).
    pub label: String,
    pub item: T,
}

/// Picks the candidate for `wanted` (linux/amd64 when `None`): the best match by
/// [`Platform::score`], the first in document order among equals, as containerd does. A
/// single candidate without a platform is taken whatever was asked. `source_name` names the
/// index or archive in the error, which lists every available platform.
pub fn select<T>(
    candidates: Vec<Candidate<T>>,
    wanted: Option<&Platform>,
    source_name: &str,
) -> Result<Candidate<T>, ImageError> {
    let default = Platform::linux_amd64();
    let wanted_ref = wanted.unwrap_or(&default);
    if candidates.len() == 1 && candidates[0].platform.is_none() {
        return candidates
            .into_iter()
            .next()
            .ok_or_else(|| unreachable_empty(source_name));
    }
    let mut best: Option<(u8, usize)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let Some(score) = c.platform.as_ref().and_then(|p| wanted_ref.score(p)) else {
            continue;
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    match best {
        Some((_, i)) => {
            let others: Vec<&str> = candidates
                .iter()
                .enumerate()
                .filter(|(j, c)| {
                    *j != i
                        && c.platform
                            .as_ref()
                            .and_then(|p| wanted_ref.score(p))
                            .is_some()
                })
                .map(|(_, c)| c.label.as_str())
                .collect();
            if !others.is_empty() {
                tracing::warn!(
                    chosen = candidates[i].label,
                    ignored = others.join(", "),
                    "several manifests match {wanted_ref}; taking the first"
                );
            }
            candidates
                .into_iter()
                .nth(i)
                .ok_or_else(|| unreachable_empty(source_name))
        }
        None => {
            let available: Vec<String> = candidates
                .iter()
                .map(|c| match &c.platform {
                    Some(p) => format!("{p} ({})", c.label),
                    None => format!("no platform ({})", c.label),
                })
                .collect();
            Err(ImageError::PlatformNotFound {
                wanted: wanted_ref.to_string(),
                source_name: source_name.to_owned(),
                available: if available.is_empty() {
                    "no image manifests at all".to_owned()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

fn unreachable_empty(source_name: &str) -> ImageError {
    ImageError::invalid(source_name, "no candidate manifest")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: Option<&str>, label: &str) -> Candidate<()> {
        Candidate {
            platform: p.map(|s| s.parse().unwrap()),
            label: label.into(),
            item: (),
        }
    }

    #[test]
    fn picks_default_and_requested() {
        let list = || {
            vec![
                c(Some("linux/arm64"), "a"),
                c(Some("linux/amd64"), "b"),
                c(Some("linux/amd64"), "c"),
            ]
        };
        assert_eq!(select(list(), None, "idx").unwrap().label, "b");
        let arm = "linux/arm64/v8".parse().unwrap();
        assert_eq!(select(list(), Some(&arm), "idx").unwrap().label, "a");
    }

    #[test]
    fn prefers_exact_variant() {
        let list = vec![c(Some("linux/arm/v6"), "v6"), c(Some("linux/arm/v7"), "v7")];
        assert_eq!(
            select(list, Some(&"linux/arm".parse().unwrap()), "i")
                .unwrap()
                .label,
            "v7"
        );
    }

    #[test]
    fn single_without_platform() {
        assert_eq!(
            select(vec![c(None, "only")], None, "i").unwrap().label,
            "only"
        );
    }

    #[test]
    fn not_found_lists_available() {
        let list = vec![
            c(Some("linux/arm64"), "sha256:aa"),
            c(None, "sha256:bb"),
            c(Some("linux/s390x"), "x"),
        ];
        let e = select(list, None, "index.json").unwrap_err().to_string();
        assert!(e.contains("linux/amd64"), "{e}");
        assert!(
            e.contains("linux/arm64 (sha256:aa)") && e.contains("linux/s390x"),
            "{e}"
        );
        assert!(
            e.contains("no platform (sha256:bb)") && e.contains("index.json"),
            "{e}"
        );
    }
}
