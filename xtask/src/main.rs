//! `cargo xtask`: build, verify and analyse AWS Lambda layers that carry their own CPython.
//!
//! This file only parses flags and dispatches; each subcommand lives in its own module.

mod analyze;
mod bench;
mod build;
mod cache;
mod core;
mod doctor;
mod fixture;
mod flags;
mod lock;
mod python;
mod spec;
mod util;
mod verify;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = flags::Cli::parse();
    let result = match cli.command {
        flags::Command::Layer(cmd) => cmd
            .options()
            .and_then(|o| build::run(&cmd.spec.spec, o, cmd.json, cmd.plan)),
        flags::Command::Lock(cmd) => lock::run(&cmd.spec.spec),
        flags::Command::FixtureRuntime(cmd) => fixture::run(&cmd.options()),
        flags::Command::Doctor(cmd) => doctor::run(&cmd.options()),
        flags::Command::Analyze(cmd) => analyze::run(&cmd.options()),
        flags::Command::Verify(cmd) => verify::run(&cmd.spec.spec, &cmd.options(), cmd.json),
        flags::Command::Cache(cmd) => cache::run(&cmd.options()),
        flags::Command::Bench(cmd) => cmd.options().and_then(|o| bench::run(&o)),
        flags::Command::VerifyInside(_) => verify::inside::main(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
