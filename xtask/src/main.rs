//! `cargo xtask`: build, verify and analyse AWS Lambda layers that carry their own CPython.
//!
//! This file only parses flags and dispatches; each subcommand lives in its own module.

mod analyze;
mod bench;
mod bytecode;
mod doctor;
mod download;
mod elf;
mod fixture;
mod flags;
mod layer;
mod lock;
mod minimize;
mod package;
mod progress;
mod prune;
mod report;
mod runtime;
mod sitezip;
mod slim;
mod spec;
mod strip;
mod util;
mod verify;
mod wheels;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = flags::Cli::parse();
    let result = match cli.command {
        flags::Command::Layer(cmd) => cmd.run(),
        flags::Command::Lock(cmd) => cmd.run(),
        flags::Command::FixtureRuntime(cmd) => cmd.run(),
        flags::Command::Doctor(cmd) => cmd.run(),
        flags::Command::Analyze(cmd) => cmd.run(),
        flags::Command::Verify(cmd) => cmd.run(),
        flags::Command::Bench(cmd) => cmd.run(),
        flags::Command::VerifyInside(cmd) => cmd.run(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
