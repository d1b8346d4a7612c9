//! FORMAT.md §open, step 4: the journal, read strictly (in the same boot, every written
//! byte is there: damage followed by a valid entry is damage, not a cut append).

use super::{Error, Result};
use crate::inspect::journal::{self, JournalScan};
use crate::storage::StorageFile;
use std::path::Path;

/// Reads the journal: every valid entry and the length of its valid prefix. A damaged
/// entry followed by a valid one is corruption; damage at the end is a torn append and is
/// cut off.
pub(super) fn read(file: Option<&dyn StorageFile>, path: &Path) -> Result<JournalScan> {
    let scan = journal::scan(file, path)?;
    if let Some((at, value)) = scan.impossible {
        return Err(Error::corrupt(
            path,
            at,
            format!("impossible acknowledged item {value}"),
        ));
    }
    if scan.valid_after {
        return Err(Error::corrupt(
            path,
            scan.valid_end,
            "damaged acknowledgement entry followed by valid ones",
        ));
    }
    Ok(scan)
}
