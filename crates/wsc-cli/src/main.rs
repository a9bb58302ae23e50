//! `wsc`: a WebSocket client for the terminal and scripts, with a built-in server.

#[macro_use]
mod say;

mod args;
mod client;
mod demo;
mod describe;
mod exit;
mod feed;
mod hub;
mod output;
mod redact;
mod serve;
mod stdout_gone;
mod tls_args;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Serve(args)) => serve::run(args, &client::interrupt_flag()),
        Some(Command::Demo(args)) => demo::run(args, &client::interrupt_flag()),
        // The client installs its Ctrl-C handler once connected: until then Ctrl-C simply
        // stops the program, as during any blocking network call.
        None => client::run(&cli.client, None),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("wsc: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}
