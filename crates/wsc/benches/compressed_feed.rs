//! Benchmark: a JSON market-data feed over loopback, compressed (permessage-deflate, context
//! takeover) vs uncompressed. Reports bytes on the wire and messages per second, and appends
//! the figures to BENCHMARKS.md when `WSC_BENCH_REPORT` names that file.
//!
//! `cargo bench -p wsc --bench compressed_feed`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use wsc::proto::deflate::DeflateConfig;
use wsc::server::Acceptor;
use wsc::{ClientBuilder, Message};

const MESSAGES: u64 = 200_000;
const RUNS: usize = 5;

/// A TCP stream that counts the bytes written through it (the server's side of the wire).
struct Counting {
    tcp: TcpStream,
    written: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// A tick like an exchange sends: mostly repeated keys and nearby numbers.
fn tick(seq: u64) -> String {
    let price = 64_000.0 + ((seq * 7919) % 5000) as f64 / 100.0;
    format!(
        r#"{{"type":"ticker","product_id":"BTC-USD","sequence":{seq},"price":"{price:.2}","best_bid":"{:.2}","best_ask":"{:.2}","side":"buy","time":"2026-11-24T18:00:{:02}.{:06}Z","last_size":"0.0{}"}}"#,
        price - 0.01,
        price + 0.01,
        seq % 60,
        seq % 1_000_000,
        seq % 97
    )
}

/// One run: returns (seconds, bytes on the wire, payload bytes).
fn run(compress: bool) -> (f64, u64, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/feed", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nodelay(true).unwrap();
        let stream = Counting {
            tcp,
            written: counter,
        };
        let acceptor = Acceptor::new().deflate(compress.then(DeflateConfig::default));
        let (mut ws, _) = acceptor.accept(stream).unwrap();
        let mut payload = 0u64;
        for seq in 0..MESSAGES {
            let t = tick(seq);
            payload += t.len() as u64;
            ws.send_text(&t).unwrap();
        }
        ws.close(None).unwrap();
        let _ = ws.read();
        payload
    });
    let mut ws = ClientBuilder::new(url)
        .compression(compress)
        .connect()
        .unwrap();
    let start = Instant::now();
    let mut got = 0u64;
    loop {
        match ws.read().unwrap() {
            Message::Text(_) => got += 1,
            Message::Close(_) => break,
            _ => {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, MESSAGES);
    let payload = server.join().unwrap();
    (secs, written.load(Ordering::Relaxed), payload)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut rows = Vec::new();
    for compress in [false, true] {
        let mut times = Vec::new();
        let mut wire = 0;
        let mut payload = 0;
        for _ in 0..RUNS {
            let (secs, w, p) = run(compress);
            times.push(secs);
            (wire, payload) = (w, p);
        }
        let secs = median(times);
        rows.push((compress, MESSAGES as f64 / secs, wire, payload));
    }
    let mut report = String::from(
        "| feed (200k JSON ticks, ~250 B) | messages/s (median of 5) | bytes on the wire | per message | vs payload |\n| --- | --- | --- | --- | --- |\n",
    );
    for (compress, rate, wire, payload) in &rows {
        report.push_str(&format!(
            "| {} | {:.0} | {} | {:.1} B | {:.1}% |\n",
            if *compress {
                "permessage-deflate"
            } else {
                "uncompressed"
            },
            rate,
            wire,
            *wire as f64 / MESSAGES as f64,
            100.0 * *wire as f64 / *payload as f64
        ));
    }
    print!("{report}");
    if let Ok(path) = std::env::var("WSC_BENCH_REPORT") {
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        let section = "## Compressed feed\n";
        if let Some(at) = text.find(section) {
            let end = text[at + section.len()..]
                .find("\n## ")
                .map_or(text.len(), |e| at + section.len() + e + 1);
            text.replace_range(at..end, "");
        }
        text.push_str(&format!(
            "{section}\n`cargo bench -p wsc --bench compressed_feed` (server and client on loopback, one process):\n\n{report}\n"
        ));
        std::fs::write(&path, text).unwrap();
    }
}
