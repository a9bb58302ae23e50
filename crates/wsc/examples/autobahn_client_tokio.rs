//! The Autobahn|Testsuite client testee on the async driver (`wsc::tokio`).
//!
//! Usage: `autobahn_client_tokio [BASE_URL]` (default `ws://127.0.0.1:9001`); agent `wsc-tokio`.
//! Same flow as `autobahn_client`: case count, every case echoed, then updateReports.

use std::process::ExitCode;

use wsc::proto::deflate::DeflateConfig;
use wsc::{ClientBuilder, Error, Message};

const AGENT: &str = "wsc-tokio";

fn builder(url: &str) -> ClientBuilder {
    ClientBuilder::new(url)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
        .deflate(Some(DeflateConfig::default().level(1)))
}

async fn case_count(base: &str) -> Result<u32, Error> {
    let (mut ws, _) = builder(&format!("{base}/getCaseCount"))
        .connect_async()
        .await?;
    let mut count = None;
    while let Some(message) = ws.recv().await {
        if let Message::Text(t) = message? {
            count = t.trim().parse().ok();
        }
    }
    count.ok_or(Error::InvalidInput("getCaseCount sent no number"))
}

async fn run_case(base: &str, case: u32) -> Result<(), Error> {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let (mut ws, _) = builder(&url).connect_async().await?;
    while let Some(message) = ws.recv().await {
        match message {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => match ws.send(m).await {
                Ok(()) | Err(Error::AlreadyClosed | Error::ConnectionClosed) => {}
                Err(e) => return Err(e),
            },
            Ok(_) => {}
            // Protocol errors are the expected outcome of many cases.
            Err(_) => {}
        }
    }
    Ok(())
}

async fn update_reports(base: &str) -> Result<(), Error> {
    let (mut ws, _) = builder(&format!("{base}/updateReports?agent={AGENT}"))
        .connect_async()
        .await?;
    // The server writes its reports and may drop the connection without a close frame.
    let _ = ws.close(None).await;
    Ok(())
}

fn main() -> ExitCode {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let base = base.trim_end_matches('/').to_string();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autobahn_client_tokio: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let count = match case_count(&base).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("autobahn_client_tokio: cannot get the case count from {base}: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("autobahn_client_tokio: running {count} cases against {base}");
        for case in 1..=count {
            if let Err(e) = run_case(&base, case).await {
                eprintln!("autobahn_client_tokio: case {case}: {e}");
            }
        }
        if let Err(e) = update_reports(&base).await {
            eprintln!("autobahn_client_tokio: updateReports: {e}");
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    })
}
