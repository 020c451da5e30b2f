//! lock

use std::process::ExitCode;

use anyhow::Result;

impl crate::flags::Lock {
    pub fn run(self) -> Result<ExitCode> {
        anyhow::bail!("lock: not implemented yet")
    }
}
