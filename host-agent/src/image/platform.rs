//! Platforms (`os/arch[/variant]`) and how a requested platform matches a manifest's.
//!
//! Matching follows containerd's normalisation: architecture aliases (`x86_64` → `amd64`,
//! `aarch64` → `arm64`), `arm64` without a variant is `v8`, `arm` without one is `v7`,
//! `amd64` without one is `v1`. A request without a variant matches every variant, and a
//! candidate whose variant equals the request's (after normalisation) is preferred.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::error::ImageError;

/// An OS, an architecture and an optional variant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub os: String,
    #[serde(rename = "architecture")]
    pub arch: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    /// The default: linux/amd64.
    pub fn linux_amd64() -> Self {
        Self {
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
        }
    }

    fn normalized(&self) -> (String, String, Option<String>) {
        let os = self.os.to_ascii_lowercase();
        let arch = self.arch.to_ascii_lowercase();
        let variant = self
            .variant
            .as_deref()
            .map(str::to_ascii_lowercase)
            .filter(|v| !v.is_empty());
        let (arch, variant) = match (arch.as_str(), variant) {
            ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v.filter(|v| v != "v1")),
            ("aarch64" | "arm64", v) => ("arm64", v.filter(|v| v != "v8" && v != "8")),
            ("armhf", None) => ("arm", Some("v7".to_owned())),
            ("armel", None) => ("arm", Some("v6".to_owned())),
            ("arm", None) => ("arm", Some("v7".to_owned())),
            ("arm", Some(v)) => (
                "arm",
                Some(if v.starts_with('v') {
                    v
                } else {
                    format!("v{v}")
                }),
            ),
            ("i386" | "i686", v) => ("386", v),
            (a, v) => (a, v),
        };
        (os, arch.to_owned(), variant)
    }

    /// How well `candidate` satisfies this request: `None` if it does not, higher is better.
    pub fn score(&self, candidate: &Self) -> Option<u8> {
        let (os, arch, variant) = self.normalized();
        let (c_os, c_arch, c_variant) = candidate.normalized();
        if os != c_os || arch != c_arch {
            return None;
        }
        let explicit = self.variant.as_deref().is_some_and(|v| !v.is_empty());
        match (explicit, variant == c_variant) {
            (_, true) => Some(2),
            (false, false) => Some(1),
            (true, false) => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, ImageError> {
        let bad = || ImageError::BadPlatform {
            value: s.to_owned(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        Ok(Self {
            os: parts[0].to_owned(),
            arch: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/amd64"), Platform::linux_amd64());
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64", ""] {
            let e = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(e.contains("not a platform"), "{e}");
        }
    }

    #[test]
    fn matching() {
        assert_eq!(p("linux/amd64").score(&p("linux/amd64")), Some(2));
        assert_eq!(p("linux/amd64").score(&p("linux/arm64")), None);
        assert_eq!(p("linux/amd64").score(&p("windows/amd64")), None);
        assert_eq!(p("linux/x86_64").score(&p("linux/amd64")), Some(2));
        assert_eq!(p("linux/arm64").score(&p("linux/arm64/v8")), Some(2));
        assert_eq!(p("linux/arm64/v8").score(&p("linux/arm64")), Some(2));
        assert_eq!(p("linux/arm/v7").score(&p("linux/arm")), Some(2));
        assert_eq!(p("linux/arm/v6").score(&p("linux/arm/v7")), None);
        assert_eq!(p("linux/arm").score(&p("linux/arm/v6")), Some(1));
        assert_eq!(p("linux/amd64").score(&p("linux/amd64/v3")), Some(1));
    }
}
