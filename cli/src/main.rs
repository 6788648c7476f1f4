//! `roster`: the operator CLI of the roster control plane.
//!
//! Every call to the server goes through the library's retrying client (R1–R5): transient failures are retried
//! at most `--max-attempts` times, within 5 requests per second, riding out a 1 s outage; giving up prints one
//! line naming the call, the attempts, the time and the last cause, and exits non-zero. `-v` shows each attempt.
//!
//! The pieces: [`args`] (what may be typed), [`commands`] (what each command does, one file each), [`output`]
//! (how answers are printed). This file parses, runs the command, and prints its error (as every roster binary does, with
//! `roster::process::exit`).

mod args;
mod commands;
mod output;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> ExitCode {
    roster::transport::tls::install_crypto_provider();
    let cli = args::Cli::parse();
    cli.check();
    roster::process::init_tracing_at(cli.log_level());
    let result = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(commands::run(cli)));
    roster::process::exit("roster", result)
}
