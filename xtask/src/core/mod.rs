//! Types shared by every stage and command. Nothing here imports from above it.

mod layout;
mod manifest;
mod owners;
mod paths;
pub mod stack;
mod target;

pub use layout::Layout;
pub use manifest::{AppliedPatch, Manifest, RemovedDistribution, RemovedModule, MANIFEST};
pub use owners::{source_of_pyc, Owners};
pub use paths::{cache_dir, default_out_dir, project_root, target_dir, LayerPaths};
pub use target::{Arch, Glibc, Runtime, Sha256Hex};

/// Lambda's limits: 50 MB for a zip uploaded directly, 250 MB unpacked for function plus layers.
pub const LAMBDA_ZIP_LIMIT: u64 = 52_428_800;
pub const LAMBDA_UNPACKED_LIMIT: u64 = 262_144_000;
