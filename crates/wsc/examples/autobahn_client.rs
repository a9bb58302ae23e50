//! The Autobahn|Testsuite client testee: echoes every case of a fuzzingserver.
//!
//! Usage: `autobahn_client [BASE_URL]` (default `ws://127.0.0.1:9001`), with the fuzzingserver
//! (e.g. `kosoku -m fuzzingserver`) listening there. It asks for the case count, runs each case
//! (echoing every text and binary message until the server closes), then asks the server to
//! write its reports. The agent name is `wsc`.

use std::process::ExitCode;

use wsc::proto::deflate::DeflateConfig;
use wsc::{ClientBuilder, Error, Message};

const AGENT: &str = "wsc";

fn builder(url: &str) -> ClientBuilder {
    // The suite sends messages up to 16 MiB (section 9) and frames just as big.
    // Compression level 1: the echo of sections 12 and 13 is dominated by compressing.
    ClientBuilder::new(url)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
        .deflate(Some(DeflateConfig::default().level(1)))
}

fn case_count(base: &str) -> Result<u32, Error> {
    let mut ws = builder(&format!("{base}/getCaseCount")).connect()?;
    let mut count = None;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => count = t.trim().parse().ok(),
            Ok(Message::Close(_)) | Err(Error::ConnectionClosed) => break,
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    count.ok_or(Error::InvalidInput("getCaseCount sent no number"))
}

/// Echoes one case until the server closes; protocol errors are the expected outcome of many
/// cases, so they end the case quietly.
fn run_case(base: &str, case: u32) -> Result<(), Error> {
    let mut ws = builder(&format!("{base}/runCase?case={case}&agent={AGENT}")).connect()?;
    loop {
        match ws.read() {
            Ok(msg @ (Message::Text(_) | Message::Binary(_))) => match ws.send(msg) {
                Ok(()) | Err(Error::AlreadyClosed | Error::ConnectionClosed) => {}
                Err(e) => return Err(e),
            },
            Ok(Message::Close(_)) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

fn update_reports(base: &str) -> Result<(), Error> {
    let mut ws = builder(&format!("{base}/updateReports?agent={AGENT}")).connect()?;
    // The server writes its reports and may drop the connection without a close frame.
    let _ = ws.close_and_wait(None);
    Ok(())
}

fn main() -> ExitCode {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/');
    let count = match case_count(base) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("autobahn_client: cannot get the case count from {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("autobahn_client: running {count} cases against {base}");
    for case in 1..=count {
        if let Err(e) = run_case(base, case) {
            eprintln!("autobahn_client: case {case}: {e}");
        }
    }
    if let Err(e) = update_reports(base) {
        eprintln!("autobahn_client: updateReports: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
