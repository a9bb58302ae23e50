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
mod json_line;
mod output;
mod redact;
mod serve;
mod serve_tls;
mod stdout_gone;
mod stop_aware_stdout;
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
    if let (None, Some(name)) = (&cli.command, cli.client.url.as_deref().and_then(misplaced)) {
        // `wsc -v serve`: the subcommand read as the URL.
        say!("wsc: invalid URL: {name:?} (is it the subcommand?)");
        say!("hint: `{name}` comes first, before any option (wsc {name} --help)");
        return ExitCode::from(2);
    }
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
/// URL followed by stray arguments, or options the client does not have, and reports in
/// those terms.
fn misplaced_subcommand(e: &clap::Error) -> Option<&'static str> {
    use clap::error::ErrorKind;
    if !matches!(
        e.kind(),
        ErrorKind::ArgumentConflict | ErrorKind::UnknownArgument
    ) {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Not after a URL: `wsc ws://h --send demo --bogus` sends the word.
    args.iter()
        .take_while(|a| !a.contains("://"))
        .skip(1)
        .find_map(|a| misplaced(a))
}

/// `arg` if it names a subcommand.
fn misplaced(arg: &str) -> Option<&'static str> {
    ["serve", "demo"].into_iter().find(|name| arg == *name)
}
