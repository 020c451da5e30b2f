//! Types shared by every stage and command. Nothing here imports from above it.

mod target;

pub use target::{Arch, Glibc, Runtime, Sha256Hex};
