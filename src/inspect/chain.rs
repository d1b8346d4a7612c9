//! The chain of chunk files (FORMAT.md §Chunk files): chunk `n + 1` starts exactly at the
//! item after chunk `n`'s last record. `open`, the reader and `repair` check it here.

use std::fmt;

/// How two neighbouring chunk files fail to continue one another: the first one's
/// records end before item `end`, the next one starts at item `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Break {
    /// Records between them are missing (`next > end`): a file cut short, or lost.
    Missing { end: u64, next: u64 },
    /// They overlap (`next < end`): records that one of them should not hold.
    Overlap { end: u64, next: u64 },
}

/// Checks that a chunk whose records end before item `end` is followed by one starting
/// at item `next`.
pub(crate) fn check(end: u64, next: u64) -> Result<(), Break> {
    match next.cmp(&end) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(Break::Missing { end, next }),
        std::cmp::Ordering::Less => Err(Break::Overlap { end, next }),
    }
}

impl Break {
    /// The message with the two chunks named (`repair`'s report).
    pub(crate) fn between(&self, first: &str, second: &str) -> String {
        let (end, next) = self.items();
        format!(
            "{first} ends at item {end} but {second} starts at item {next}: {}",
            self.what()
        )
    }

    fn items(&self) -> (u64, u64) {
        match *self {
            Break::Missing { end, next } | Break::Overlap { end, next } => (end, next),
        }
    }

    fn what(&self) -> String {
        match *self {
            Break::Missing { end, next } => format!("{} records are missing", next - end),
            Break::Overlap { end, next } => format!("the chunks overlap by {} records", end - next),
        }
    }
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (end, next) = self.items();
        write!(
            f,
            "the chunk ends at item {end} but the next chunk starts at item {next}: {}",
            self.what()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continued_missing_and_overlapping() {
        assert_eq!(check(10, 10), Ok(()));
        let missing = check(10, 13).unwrap_err();
        assert_eq!(missing, Break::Missing { end: 10, next: 13 });
        assert!(missing.to_string().ends_with("3 records are missing"));
        let overlap = check(10, 8).unwrap_err();
        assert!(
            overlap
                .between("q00001", "q00002")
                .starts_with("q00001 ends at item 10")
        );
        assert!(overlap.to_string().ends_with("overlap by 2 records"));
    }
}
