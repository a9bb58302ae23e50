//! A feed consumer against a local feed server, all in one process and offline: the seed use
//! case (subscribe to a market-data stream, read ticks) on loopback.
//!
//! `cargo run -p wsc --example feed_demo`

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use wsc::{CloseFrame, Message};

/// A tiny feed server: waits for a subscription, then streams ticks and a ping.
fn feed_server(listener: TcpListener) -> Result<(), wsc::Error> {
    let (tcp, _) = listener.accept()?;
    let mut ws = wsc::server::accept(tcp)?;
    let Message::Text(subscription) = ws.read()? else {
        return Ok(());
    };
    ws.send_text(&format!(r#"{{"subscribed":{subscription}}}"#))?;
    for seq in 0..10u32 {
        let price = 64_000.0 + f64::from(seq * 37 % 100) * 1.25;
        ws.send_text(&format!(
            r#"{{"seq":{seq},"symbol":"BTC-USD","price":{price:.2}}}"#
        ))?;
        if seq == 5 {
            ws.ping(b"keepalive")?;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // Read until the client closes (its close is answered automatically).
    while !matches!(ws.read()?, Message::Close(_)) {}
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("ws://{}/market", listener.local_addr()?);
    let server = thread::spawn(move || feed_server(listener));

    let mut ws = wsc::connect(&url)?;
    println!("connected to {url}");
    ws.send_text(r#"{"op":"subscribe","channel":"ticker","symbol":"BTC-USD"}"#)?;
    let mut ticks = 0;
    while ticks < 10 {
        match ws.read()? {
            Message::Text(text) => {
                println!("< {text}");
                if text.contains("\"seq\"") {
                    ticks += 1;
                }
            }
            Message::Ping(payload) => {
                println!("< ping {:?} (pong sent)", String::from_utf8_lossy(&payload))
            }
            other => println!("< {other:?}"),
        }
    }
    let reply = ws.close_and_wait(Some(CloseFrame::new(1000, "done")))?;
    println!("closed cleanly: server answered {reply:?}");
    server.join().map_err(|_| "feed server panicked")??;
    Ok(())
}
