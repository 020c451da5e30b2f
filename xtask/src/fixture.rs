//! `cargo xtask fixture-runtime`: a python-build-standalone-shaped archive from local parts,
//! for tests and offline demos.

use std::process::ExitCode;

use anyhow::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavour {
    #[value(name = "install_only")]
    InstallOnly,
    #[value(name = "full")]
    Full,
}

impl crate::flags::FixtureRuntime {
    pub fn run(self) -> Result<ExitCode> {
        anyhow::bail!("fixture-runtime: not implemented yet")
    }
}
