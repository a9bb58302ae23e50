//! Command line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_STATUS_HELP;

/// Talk to a WebSocket server from a terminal or a script, or run one for tests.
#[derive(Debug, Parser)]
#[command(
    name = "wsc",
    version,
    after_help = EXIT_STATUS_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_precedence_over_arg = true,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a WebSocket server: echo (default), broadcast, or a market-data feed.
    Serve(ServeArgs),
    /// Start a feed server in-process and stream from it for a few seconds (offline).
    Demo(DemoArgs),
}

/// The client (the default command): `wsc URL`.
#[derive(Debug, Args, Clone, Default)]
pub struct ClientArgs {
    /// The ws:// or wss:// URL to connect to.
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Send this text message right after connecting (repeatable), e.g. a subscription.
    #[arg(short = 's', long = "send", value_name = "MSG")]
    pub send: Vec<String>,

    /// Exit after receiving N messages (sends close 1000 first); the end of stdin does not
    /// close the connection before then. A server that closes before N arrived: exit 14.
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,

    /// Do not read stdin: only send --send messages and listen.
    #[arg(short = 'n', long)]
    pub no_stdin: bool,

    /// Keep the connection open at the end of stdin (default: close it).
    #[arg(long)]
    pub keep_open: bool,

    /// At the end of stdin, close only once no message has come for SECS (default 1; 0 closes
    /// at once), and at the latest 10 x SECS after it (a server that never goes quiet): the
    /// replies to the last input get printed (many servers drop what they would send once
    /// they see our close). With --count, whichever comes first (without
    /// --linger, the count alone decides); with -n, SECS after the --send messages (without
    /// --linger, -n stays open).
    #[arg(long, value_name = "SECS", value_parser = parse_secs_or_zero, conflicts_with = "keep_open")]
    pub linger: Option<f64>,

    /// Binary mode: send stdin as binary messages (one per read of stdin, up to 64 KiB each)
    /// and print received binary raw (not hex).
    #[arg(short = 'b', long)]
    pub binary: bool,

    /// Send all of stdin as one message when it ends (text, or binary with --binary) rather
    /// than a message per line: a pretty-printed JSON request, a file (`--whole < req.json`).
    /// At most --max-message-size bytes; text drops one final newline.
    #[arg(short = 'W', long, conflicts_with = "no_stdin")]
    pub whole: bool,

    /// The close code wsc ends with when it ends as asked (end of input, --count reached, a
    /// stop signal), instead of 1000: 1000-1003, 1007-1014, or 3000-4999 (an application's).
    /// The server answering with the same code is a clean end (exit 0).
    #[arg(long, value_name = "CODE", value_parser = parse_close_code)]
    pub close_code: Option<u16>,

    /// The reason sent with that close (default none; UTF-8, at most 123 bytes).
    #[arg(long, value_name = "TEXT", value_parser = parse_close_reason)]
    pub close_reason: Option<String>,

    /// Print every received message and control frame as one JSON object per line.
    #[arg(long)]
    pub json: bool,

    /// Show the handshake headers (the values of Authorization, Proxy-Authorization, Cookie
    /// and the server's Set-Cookie hidden: `session=***`, Set-Cookie's attributes kept),
    /// control frames and, with --ping-interval, each ping's round trip on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Add a request header (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,

    /// Offer a subprotocol (repeatable, in order of preference).
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,

    /// Send an Origin header.
    #[arg(long)]
    pub origin: Option<String>,

    /// Do not verify the server's TLS certificate (testing only).
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Trust the CA certificates in this PEM file (in addition to the system's); a server
    /// presenting one of them as its own (a self-signed certificate) is trusted too.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of the client certificate; needs --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Do not offer permessage-deflate compression.
    #[arg(long)]
    pub no_compression: bool,

    /// Largest message accepted, in bytes (suffixes K, M, G allowed; default 64M); also the
    /// longest line of stdin we send (a longer one is an error).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_message_size: Option<usize>,

    /// Bound the whole opening (TCP, proxy, TLS and WebSocket handshake), in seconds.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_secs)]
    pub connect_timeout: f64,

    /// Send a ping every SECS seconds; a missing pong is an error.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub ping_interval: Option<f64>,

    /// How long to wait for a pong before giving up (default: the ping interval, at least 1 s);
    /// data arriving meanwhile (a big message the pong waits behind) extends it to SECS
    /// after the last of it.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "ping_interval")]
    pub ping_timeout: Option<f64>,

    /// Close (1001) and fail (exit 7) when no text or binary message arrives for SECS seconds
    /// (pings and pongs do not count: with --ping-interval, this catches a feed that stays up
    /// but goes silent); with --reconnect, close (1001) and reconnect instead, counted per
    /// connection (the wait between connections does not count).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub idle_timeout: Option<f64>,

    /// Reconnect after the connection drops, with backoff, sending the --send messages again;
    /// stdin lines wait for the new connection. Each failed attempt is said on stderr; a
    /// refusal with Retry-After (429, 503) is waited out, up to an hour.
    #[arg(long)]
    pub reconnect: bool,

    /// With --reconnect: give up after N failed attempts in a row (default: never); a
    /// connection that drops within 10 s of opening counts as one. The first connection is
    /// not retried: a server that cannot be reached at all is an error.
    #[arg(long, value_name = "N", requires = "reconnect")]
    pub reconnect_max_attempts: Option<u32>,

    /// With --reconnect: the longest wait between attempts (default 30; a server's
    /// Retry-After may ask for longer).
    #[arg(long, value_name = "SECS", value_parser = parse_secs, requires = "reconnect")]
    pub reconnect_max_delay: Option<f64>,

    /// Tunnel through this proxy: http://[user:pass@]host:port (HTTP CONNECT), socks5://
    /// (SOCKS5, host name resolved here) or socks5h:// (SOCKS5, resolved by the proxy); ""
    /// connects directly. Default: WSS_PROXY or HTTPS_PROXY (wss://) / WS_PROXY or
    /// HTTP_PROXY (ws://) / ALL_PROXY
    /// from the environment, minus NO_PROXY; never for loopback hosts (localhost, 127.0.0.1,
    /// ::1), which --proxy tunnels too.
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    pub proxy: Option<String>,

    /// Connect directly, ignoring the proxy environment variables.
    #[arg(long)]
    pub no_proxy: bool,

    /// Use ADDR for HOST instead of DNS (repeatable, for other hosts: the last one given for
    /// a host wins; several addresses comma-separated), e.g. --resolve
    /// example.com:127.0.0.1 or --resolve localhost:[::1],127.0.0.1.
    #[arg(long, value_name = "HOST:ADDR[,ADDR]", value_parser = parse_resolve)]
    pub resolve: Vec<(String, Vec<std::net::IpAddr>)>,

    /// Follow redirects of the handshake (301, 302, 303, 307, 308), up to --max-redirects.
    #[arg(short = 'L', long)]
    pub location: bool,

    /// With --location: the most redirects to follow.
    #[arg(long, value_name = "N", default_value = "10", requires = "location")]
    pub max_redirects: u32,

    /// With --location: allow a redirect from wss:// to unencrypted ws://.
    #[arg(long, requires = "location")]
    pub allow_insecure_redirects: bool,
}

/// Parses `HOST:ADDR[,ADDR...]` (IPv6 addresses with or without brackets).
fn parse_resolve(s: &str) -> Result<(String, Vec<std::net::IpAddr>), String> {
    let (host, addrs) = s
        .split_once(':')
        .filter(|(h, a)| !h.is_empty() && !a.is_empty())
        .ok_or_else(|| format!("{s:?} is not HOST:ADDR (e.g. example.com:127.0.0.1)"))?;
    // A URL's IP address is connected to as it is: only names are looked up.
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "{s:?}: HOST must be a name; an IP address in the URL is used as it is"
        ));
    }
    let addrs = addrs
        .split(',')
        .map(|a| {
            let a = a.trim();
            let bare = a
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(a);
            bare.parse()
                .map_err(|_| format!("{a:?} in {s:?} is not an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((host.to_string(), addrs))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ServeMode {
    /// Send every message back to its sender.
    #[default]
    Echo,
    /// Send every message to every connected client.
    Broadcast,
    /// Stream generated JSON ticks after a subscription; ping now and then.
    Feed,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:9001 or [::1]:9001; a port alone (9001) listens
    /// on 127.0.0.1.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:9001", value_parser = parse_listen_addr)]
    pub addr: String,

    /// Echo messages back (the default mode).
    #[arg(long, conflicts_with_all = ["broadcast", "feed"])]
    pub echo: bool,

    /// Send every message to every client. A client more than 16 MiB behind is closed
    /// with 1008 (too slow), not left to miss messages.
    #[arg(long, conflicts_with = "feed")]
    pub broadcast: bool,

    /// Stream JSON ticks to subscribers: a client sends
    /// {"op":"subscribe","symbols":["BTC-USD"]} ({"op":"unsubscribe"} stops them).
    #[arg(long)]
    pub feed: bool,

    /// Feed: ticks per second per symbol.
    #[arg(long, value_name = "N", default_value = "10", value_parser = parse_rate, requires = "feed")]
    pub rate: f64,

    /// Feed: send a ping every SECS seconds (0: never).
    #[arg(
        long,
        value_name = "SECS",
        default_value = "5",
        value_parser = parse_secs_or_zero,
        requires = "feed"
    )]
    pub feed_ping: f64,

    /// Decline permessage-deflate compression.
    #[arg(long)]
    pub no_compression: bool,

    /// Largest message accepted from clients, in bytes (suffixes K, M, G allowed).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub max_message_size: Option<usize>,

    /// No line per connection on stderr (the first line, with the address served, stays).
    #[arg(short, long)]
    pub quiet: bool,

    /// Serve wss:// (TLS) with this certificate chain (PEM, the server's own first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    pub fn mode(&self) -> ServeMode {
        if self.broadcast {
            ServeMode::Broadcast
        } else if self.feed {
            ServeMode::Feed
        } else {
            ServeMode::Echo
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// How long to stream, in seconds.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_secs)]
    pub duration: f64,
}

/// A listen address; `9001` and `:9001` mean 127.0.0.1:9001.
fn parse_listen_addr(s: &str) -> Result<String, String> {
    let port = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port.parse::<u16>() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    if s.contains("://") {
        return Err(format!(
            "{s:?} is a URL; give the address to listen on, e.g. 127.0.0.1:9001"
        ));
    }
    Ok(s.to_string())
}

/// A close code wsc may send (`--close-code`).
fn parse_close_code(s: &str) -> Result<u16, String> {
    let code: u16 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a close code (a number such as 1000 or 4000)"))?;
    if !wsc::CloseCode(code).is_valid_on_wire() {
        return Err(format!(
            "{code} cannot be sent: close codes are 1000-1003, 1007-1014 or 3000-4999"
        ));
    }
    Ok(code)
}

/// A close reason that fits in a close frame (`--close-reason`): a control frame's payload,
/// less the code's two bytes.
fn parse_close_reason(s: &str) -> Result<String, String> {
    let max = wsc::proto::frame::MAX_CONTROL_PAYLOAD - 2;
    if s.len() > max {
        return Err(format!(
            "a close reason has at most {max} bytes (this one has {})",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// Parses a duration in seconds: `5`, `0.25`, or with a unit, `500ms`, `5s`, `2m`, `1h`.
fn parse_secs(s: &str) -> Result<f64, String> {
    match parse_duration(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a positive duration (seconds, or with a unit: 500ms, 5s, 2m, 1h)"
        )),
    }
}

/// [`parse_secs`], zero allowed.
fn parse_duration(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (number, scale) = [("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .into_iter()
        .find_map(|(unit, scale)| t.strip_suffix(unit).map(|n| (n, scale)))
        .unwrap_or((t, 1.0));
    match number.trim().parse::<f64>().map(|v| v * scale) {
        Ok(v) if v == 0.0 || (1e-3..1e9).contains(&v) => Ok(v),
        // A timer that short would fire in a tight loop (or not at all, rounded to zero).
        Ok(v) if v > 0.0 && v < 1e-3 => Err(format!("{s:?} is too short (at least 1ms)")),
        Ok(v) if v >= 1e9 => Err(format!("{s:?} is too long (under 1e9 seconds, 31 years)")),
        _ => Err(format!(
            "{s:?} is not a positive duration (seconds, or with a unit: 500ms, 5s, 2m, 1h)"
        )),
    }
}

fn parse_secs_or_zero(s: &str) -> Result<f64, String> {
    parse_duration(s)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.001..=100_000.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a rate between 0.001 and 100000 per second"
        )),
    }
}

/// Parses `1024`, `64K`, `16M`, `1G` (binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(1usize << shift))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 1048576, 512K, 64M)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn resolve_entries() {
        let (host, addrs) = parse_resolve("localhost:[::1],127.0.0.1").unwrap();
        assert_eq!(host, "localhost");
        assert_eq!(
            addrs,
            [
                "::1".parse::<std::net::IpAddr>().unwrap(),
                [127, 0, 0, 1].into()
            ]
        );
        assert!(parse_resolve("localhost").is_err());
        assert!(parse_resolve("localhost:nope").is_err());
        for ip_host in ["127.0.0.2:127.0.0.1", "[::2]:127.0.0.1"] {
            let err = parse_resolve(ip_host).unwrap_err();
            assert!(err.contains("HOST must be a name"), "{ip_host}: {err}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("0.5"), Ok(0.5));
        assert!(parse_secs("0")
            .unwrap_err()
            .contains("not a positive duration"));
        assert!(parse_secs("nan")
            .unwrap_err()
            .contains("not a positive duration"));
        assert!(parse_secs("1e30").unwrap_err().contains("too long"));
        // Units, as other tools take them.
        assert_eq!(parse_secs("500ms"), Ok(0.5));
        assert_eq!(parse_secs("5s"), Ok(5.0));
        assert_eq!(parse_secs("2m"), Ok(120.0));
        assert_eq!(parse_secs("1h"), Ok(3600.0));
        assert_eq!(parse_secs(" 1.5 s "), Ok(1.5));
        assert!(parse_secs("5x").is_err());
        assert!(parse_secs("ms").is_err());
        assert!(parse_secs("-1s").is_err());
        assert_eq!(parse_secs_or_zero("0"), Ok(0.0));
        assert_eq!(parse_secs_or_zero("0s"), Ok(0.0));
        assert_eq!(parse_secs_or_zero("0m"), Ok(0.0));
        assert_eq!(parse_secs_or_zero("0.00"), Ok(0.0));
        assert!(parse_secs_or_zero("-1").is_err());
        // Under a millisecond: a timer in a tight loop, or a zero period (a panic).
        for short in ["1e-12", "0.0001", "0.5ms", "1e-300"] {
            assert!(
                parse_secs(short).unwrap_err().contains("too short"),
                "{short}"
            );
            assert!(parse_secs_or_zero(short).is_err(), "{short}");
        }
        assert_eq!(parse_secs("1ms"), Ok(0.001));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10"), Ok(10.0));
        assert_eq!(parse_rate("0.001"), Ok(0.001));
        // 1e-300 per second: a period past what a Duration holds (a panic).
        for bad in ["0", "1e-300", "0.0009", "100001", "nan", "inf", "-1"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
