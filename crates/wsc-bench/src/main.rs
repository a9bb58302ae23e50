//! `wsc-bench`: wsc's clients side by side with tungstenite, tokio-tungstenite,
//! fastwebsockets and yawc, on loopback; and `raw`, plain socket calls doing the least any
//! client could (see `impls/raw.rs`): the physical limit of feed, echo, large and connect.
//!
//! ```text
//! wsc-bench serve --addr 127.0.0.1:9100
//! wsc-bench client --scenario feed --impl wsc --addr 127.0.0.1:9100 --size 100 --count 2000000
//! wsc-bench list
//! ```
//!
//! `--count` is the number of messages of a feed (the whole stream; `--warmup` of them are
//! read before the clock starts, default 0), of round trips of `echo` and `large`, of
//! connections of `connect` and `idle` (warm-up ones not included).
//!
//! The server prints `listening ADDR` when ready. A client run prints one line of JSON (see
//! `report.rs` for the keys) and exits 0 when measured, 1 when the run failed (the line has
//! `"error"`), 2 on bad arguments, 3 when the impl does not do this scenario (the line has
//! `"skipped"`). `list` prints the scenario/impl pairs that run, one per line.

mod impls;
mod payload;
mod report;
mod scenario;
mod server;

use std::io::Write;

use report::Report;
use scenario::{run_async, run_sync, Params, Scenario, SCENARIOS};

/// The clients, in the order `list` prints them.
const IMPLS: [&str; 8] = [
    "wsc",
    "wsc-async",
    "tungstenite",
    "tokio-tungstenite",
    "fastwebsockets",
    "yawc",
    "raw",
    "raw-utf8",
];

/// The buffer of raw's feed reads without `--read-buf` (see `impls/raw.rs` for why not more).
const RAW_READ_BUF: usize = 64 << 10;

const USAGE: &str = "usage:
  wsc-bench serve --addr 127.0.0.1:PORT
  wsc-bench client --scenario S --impl I --addr 127.0.0.1:PORT [--size N] [--count M] [--warmup W]
                   [--read-buf BYTES]   (raw feed only; default 65536)
  wsc-bench list

scenarios: feed, echo, large, connect, compressed, idle
impls: wsc, wsc-async, tungstenite, tokio-tungstenite, fastwebsockets, yawc, raw, raw-utf8";

/// Why `imp` does not run `scenario`, if it does not.
fn unsupported(scenario: Scenario, imp: &str) -> Option<&'static str> {
    match (scenario, imp) {
        (Scenario::Compressed | Scenario::Idle, "raw" | "raw-utf8") => Some(
            "raw sets the limit of the transfers only (feed, echo, large, connect): \
             inflating and holding connections are the libraries' own work",
        ),
        (Scenario::Echo | Scenario::Large | Scenario::Connect, "raw-utf8") => Some(
            "raw-utf8 is raw plus the UTF-8 check of a text feed: in the other scenarios the \
             limit is raw's",
        ),
        (Scenario::Compressed, "tungstenite" | "tokio-tungstenite" | "fastwebsockets") => {
            Some("no permessage-deflate in this library")
        }
        (Scenario::Idle, "wsc" | "tungstenite") => {
            Some("blocking client: a thread per idle connection would dominate the memory")
        }
        _ => None,
    }
}

/// `--key value` and `--key=value` pairs.
fn flags(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(key) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (key, value) = match key.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
                (key.to_string(), v.clone())
            }
        };
        out.push((key, value));
    }
    Ok(out)
}

fn get<'a>(flags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    flags
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn number<T: std::str::FromStr>(
    flags: &[(String, String)],
    key: &str,
) -> Result<Option<T>, String> {
    get(flags, key)
        .map(|v| {
            v.replace('_', "")
                .parse()
                .map_err(|_| format!("--{key}: not a number: {v:?}"))
        })
        .transpose()
}

fn serve_cmd(args: &[String]) -> i32 {
    let flags = match flags(args) {
        Ok(f) => f,
        Err(e) => return usage_error(&e),
    };
    let Some(addr) = get(&flags, "addr") else {
        return usage_error("serve needs --addr");
    };
    match server::serve(addr) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wsc-bench serve: {e}");
            1
        }
    }
}

fn client_cmd(args: &[String]) -> i32 {
    let flags = match flags(args) {
        Ok(f) => f,
        Err(e) => return usage_error(&e),
    };
    let Some(scenario) = get(&flags, "scenario").and_then(Scenario::parse) else {
        return usage_error(
            "client needs --scenario (feed, echo, large, connect, compressed, idle)",
        );
    };
    let Some(imp) = get(&flags, "impl").filter(|i| IMPLS.contains(i)) else {
        return usage_error(&format!("client needs --impl ({})", IMPLS.join(", ")));
    };
    let Some(addr) = get(&flags, "addr") else {
        return usage_error("client needs --addr");
    };
    let (size, count, warmup, read_buf) = match (
        number::<usize>(&flags, "size"),
        number::<u64>(&flags, "count"),
        number::<u64>(&flags, "warmup"),
        number::<usize>(&flags, "read-buf"),
    ) {
        (Ok(s), Ok(c), Ok(w), Ok(b)) => (s, c, w, b.unwrap_or(RAW_READ_BUF)),
        (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => return usage_error(&e),
    };
    let fixed_size = scenario.default_size();
    let size = size.or(fixed_size).unwrap_or(0);
    let count = count.unwrap_or_else(|| scenario.default_count(size)).max(1);
    let warmup = warmup.unwrap_or_else(|| scenario.default_warmup());
    if matches!(scenario, Scenario::Feed | Scenario::Compressed) && warmup >= count {
        return usage_error(
            "--warmup: for the feeds, the messages before the clock starts, fewer than --count",
        );
    }
    let params = Params {
        scenario,
        addr: addr.to_string(),
        size,
        count,
        warmup,
    };
    let mut report = Report::new(scenario.name(), imp);
    report.size = fixed_size.map(|_| size as u64);
    report.count = Some(params.count);
    report.warmup = Some(params.warmup);

    if let Some(why) = unsupported(scenario, imp) {
        report.skipped = Some(why.to_string());
        return emit(&report, 3);
    }
    let result = match imp {
        "wsc" => run_sync::<impls::wsc::Client>(&params, &mut report),
        "tungstenite" => run_sync::<impls::tungstenite::Client>(&params, &mut report),
        "wsc-async" => run_async::<impls::wsc_async::Client>(&params, &mut report),
        "tokio-tungstenite" => run_async::<impls::tokio_tungstenite::Client>(&params, &mut report),
        "fastwebsockets" => run_async::<impls::fastwebsockets::Client>(&params, &mut report),
        "yawc" => run_async::<impls::yawc::Client>(&params, &mut report),
        "raw" => impls::raw::run(&params, read_buf, false, &mut report),
        "raw-utf8" => impls::raw::run(&params, read_buf, true, &mut report),
        _ => unreachable!("checked above"),
    };
    match result {
        Ok(()) => emit(&report, 0),
        Err(e) => {
            report.error = Some(e.to_string());
            emit(&report, 1)
        }
    }
}

fn emit(report: &Report, code: i32) -> i32 {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", report.to_json());
    let _ = out.flush();
    code
}

fn usage_error(msg: &str) -> i32 {
    eprintln!("wsc-bench: {msg}\n\n{USAGE}");
    2
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("serve") => serve_cmd(&args[1..]),
        Some("client") => client_cmd(&args[1..]),
        Some("list") => {
            for scenario in SCENARIOS {
                for imp in IMPLS {
                    if unsupported(scenario, imp).is_none() {
                        println!("{} {imp}", scenario.name());
                    }
                }
            }
            0
        }
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            0
        }
        _ => usage_error("a subcommand is needed"),
    };
    // Leave at once: no teardown of idle connections or runtimes to wait for.
    std::process::exit(code);
}
