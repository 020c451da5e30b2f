//! layer

use std::process::ExitCode;

use anyhow::Result;

impl crate::flags::Layer {
    pub fn run(self) -> Result<ExitCode> {
        anyhow::bail!("layer: not implemented yet")
    }
}

impl crate::flags::Doctor {
    pub fn run(self) -> Result<ExitCode> {
        anyhow::bail!("doctor: not implemented yet")
    }
}
