//! Salvaging a damaged queue directory.
