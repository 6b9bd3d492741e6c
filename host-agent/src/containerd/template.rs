//! containerd's mount templates (`core/mount/manager/format.go`), read symbolically.
//!
//! containerd fills a `format/` mount's source, target and options with Go's
//! `text/template`, where:
//! - `{{ mount i }}` is the mount point of the earlier mount `i`;
//! - `{{ overlay a b }}` is the mount points `a..=b` joined by `:` when `a <= b`, and
//!   `a, a-1, .., b` joined by `:` when `a > b` (a descending range);
//! - every index must name a mount *before* the one being formatted (an active mount),
//!   else the template fails ("index out of bounds" / "invalid range").
//!
//! The parser does not know mount points, so a string becomes [`Piece`]s: literal text and
//! references to mounts. Only the two functions above, with plain decimal indices and
//! spaces between the words, are read; `source`, `target`, pipelines, trim markers (`{{-`)
//! and other number forms (`0x1`, `01`, `+1`) are refused.

use super::MountListError;

/// A piece of a formatted string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Literal text, copied as is.
    Text(&'a str),
    /// `{{ mount i }}` (and `{{ overlay i i }}`).
    Mount(usize),
    /// `{{ overlay start end }}` with `start != end`.
    Overlay { start: usize, end: usize },
}

impl Piece<'_> {
    /// The mounts a reference names, in the order of the formatted text; none for text.
    pub(crate) fn mounts(self) -> Box<dyn Iterator<Item = usize>> {
        match self {
            Piece::Text(_) => Box::new(std::iter::empty()),
            Piece::Mount(i) => Box::new(std::iter::once(i)),
            Piece::Overlay { start, end } if start <= end => Box::new(start..=end),
            Piece::Overlay { start, end } => Box::new((end..=start).rev()),
        }
    }
}

/// Whether `s` holds a template: containerd formats a string only when it contains `{{`.
pub(crate) fn has_template(s: &str) -> bool {
    s.contains("{{")
}

/// Reads `text`, a string of mount `index`, into pieces; references may name mounts
/// `0..index` only. `text` is also what errors quote.
pub(crate) fn expand(text: &str, index: usize) -> Result<Vec<Piece<'_>>, MountListError> {
    let malformed = |reason| MountListError::MalformedTemplate {
        index,
        text: text.to_owned(),
        reason,
    };
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| malformed("`{{` without `}}`"))?;
        pieces.push(action(&after[..close], text, index)?);
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// One action, the text between `{{` and `}}`.
fn action<'a>(inner: &str, text: &str, index: usize) -> Result<Piece<'a>, MountListError> {
    let malformed = |reason| MountListError::MalformedTemplate {
        index,
        text: text.to_owned(),
        reason,
    };
    if inner.starts_with('-') || inner.ends_with('-') {
        return Err(malformed("trim markers (`{{-`, `-}}`) are not supported"));
    }
    let words: Vec<&str> = inner.split(is_space).filter(|w| !w.is_empty()).collect();
    let at = |word: &str| -> Result<usize, MountListError> {
        let n = number(word).ok_or_else(|| malformed("an index must be a plain decimal number"))?;
        match usize::try_from(n) {
            Ok(i) if i < index => Ok(i),
            _ => Err(MountListError::TemplateOutOfRange {
                index,
                text: text.to_owned(),
                mount: n,
            }),
        }
    };
    match words.as_slice() {
        [] => Err(malformed("empty action")),
        ["mount", i] => Ok(Piece::Mount(at(i)?)),
        ["mount", ..] => Err(malformed("`mount` takes one index")),
        ["overlay", a, b] => {
            let (start, end) = (at(a)?, at(b)?);
            Ok(match start == end {
                true => Piece::Mount(start),
                false => Piece::Overlay { start, end },
            })
        }
        ["overlay", ..] => Err(malformed("`overlay` takes two indices")),
        [function, ..] => Err(MountListError::UnknownTemplate {
            index,
            text: text.to_owned(),
            function: (*function).to_owned(),
        }),
    }
}

/// A plain decimal number: digits, no sign, no leading zero (Go reads `010` as octal);
/// `None` if it is not one. Numbers past `u64::MAX` read as `u64::MAX` (out of range).
fn number(word: &str) -> Option<u64> {
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if word.len() > 1 && word.starts_with('0') {
        return None;
    }
    Some(word.parse().unwrap_or(u64::MAX))
}
