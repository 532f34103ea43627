//! What the fuzz targets (`fuzz_targets/`) and the seed writer
//! (`src/bin/write_seeds.rs`) share: the snapshot types the envelope target
//! decodes, and the input format of the journal-replay target.

pub mod alloc_cap;
pub mod journal;
pub mod snapshots;
