//! `wsc`: a WebSocket client for the terminal and scripts, with a built-in server.

mod args;
mod client;
mod demo;
mod exit;
mod feed;
mod output;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stop = client::interrupt_flag();
    let result = match &cli.command {
        Some(Command::Serve(args)) => serve::run(args, &stop),
        Some(Command::Demo(args)) => demo::run(args, &stop),
        None => client::run(&cli.client, &stop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsc: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}
