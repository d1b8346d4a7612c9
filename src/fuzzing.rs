//! Bodies of the cargo-fuzz targets in `fuzz/`, as plain functions so that a stable
//! `#[test]` replays the checked-in corpus through exactly the same code. Not public API.
