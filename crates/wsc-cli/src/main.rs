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
mod serve_tls;
mod stdout_gone;
mod terminal;
mod tls_args;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if let Some(name) = misplaced_subcommand(&e) {
                say!("hint: `{name}` comes first, before any option (wsc {name} --help)");
            }
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match &cli.command {
        Some(Command::Serve(args)) => serve::run(args, &client::interrupt_flag()),
        Some(Command::Demo(args)) => demo::run(args, &client::interrupt_flag()),
        // Until the connection is open, Ctrl-C stops the program (130) as during any
        // blocking network call; from then on it closes the connection first.
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

/// The subcommand named after a client option (`wsc -v serve ...`), which clap reads as a
/// URL followed by a stray argument and reports in those terms.
fn misplaced_subcommand(e: &clap::Error) -> Option<&'static str> {
    if e.kind() != clap::error::ErrorKind::ArgumentConflict {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    ["serve", "demo"]
        .into_iter()
        .find(|name| args.iter().skip(1).any(|a| a == name))
}
