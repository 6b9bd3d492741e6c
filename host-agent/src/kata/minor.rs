//! Minor allocation: the lowest minor no node of the store has.

use std::collections::BTreeSet;

use super::{KataStoreError, MAX_MINOR};

/// The lowest minor in `0..=MAX_MINOR` not in `in_use`.
pub fn allocate_minor(in_use: &BTreeSet<u32>) -> Result<u32, KataStoreError> {
    lowest_free(in_use, MAX_MINOR)
}

/// The lowest minor in `0..=max` not in `in_use`: the first gap in the sorted set.
fn lowest_free(in_use: &BTreeSet<u32>, max: u32) -> Result<u32, KataStoreError> {
    let mut candidate = 0u32;
    for &used in in_use.range(..=max) {
        if used != candidate {
            break;
        }
        match candidate.checked_add(1) {
            Some(next) => candidate = next,
            None => return Err(KataStoreError::MinorsExhausted { max }),
        }
    }
    if candidate > max {
        return Err(KataStoreError::MinorsExhausted { max });
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_gap_first() {
        let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(allocate_minor(&set(&[])).unwrap(), 0);
        assert_eq!(allocate_minor(&set(&[0, 1, 2])).unwrap(), 3);
        assert_eq!(allocate_minor(&set(&[0, 1, 3, 4])).unwrap(), 2);
        assert_eq!(allocate_minor(&set(&[1, 2])).unwrap(), 0);
        assert_eq!(allocate_minor(&set(&[0, 7, MAX_MINOR])).unwrap(), 1);
        // Minors beyond the bound (not from a real dev_t) do not matter.
        assert_eq!(lowest_free(&set(&[0, 1, 5]), 3).unwrap(), 2);
    }

    #[test]
    fn exhaustion_is_reported() {
        let small: BTreeSet<u32> = (0..=3).collect();
        assert!(matches!(
            lowest_free(&small, 3),
            Err(KataStoreError::MinorsExhausted { max: 3 })
        ));
        assert_eq!(lowest_free(&small, 4).unwrap(), 4);
        let all: BTreeSet<u32> = (0..=MAX_MINOR).collect();
        let err = allocate_minor(&all).unwrap_err();
        assert_eq!(
            err.to_string(),
            "every minor 0..=1048575 of major 241 is in use"
        );
    }
}
