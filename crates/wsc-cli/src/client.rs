//! The client session: connect, send `--send` messages and stdin, print what arrives, keep
//! pinging if asked, and close cleanly on end of input, `--count` or Ctrl-C.

use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use wsc::{
    ClientBuilder, CloseCode, CloseFrame, Error, MaybeTlsStream, Message, Phase, TlsOptions,
    WebSocket,
};

use crate::args::ClientArgs;
use crate::exit::CliError;
use crate::output::Format;

/// How often the session looks at stdin, timers and Ctrl-C while waiting for messages.
const POLL: Duration = Duration::from_millis(20);

/// How long to wait for the server's close after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Input from stdin, read on its own thread.
enum Input {
    Text(String),
    Binary(Vec<u8>),
    End,
    Failed(io::Error),
}

fn spawn_stdin_reader(binary: bool) -> Receiver<Input> {
    let (tx, rx) = mpsc::sync_channel(64);
    thread::spawn(move || {
        let stdin = io::stdin();
        let mut stdin = stdin.lock();
        loop {
            let item = if binary {
                let mut buf = vec![0u8; 64 << 10];
                match stdin.read(&mut buf) {
                    Ok(0) => Input::End,
                    Ok(n) => {
                        buf.truncate(n);
                        Input::Binary(buf)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Input::Failed(e),
                }
            } else {
                let mut line = Vec::new();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) => Input::End,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        match String::from_utf8(line) {
                            Ok(text) => Input::Text(text),
                            Err(_) => {
                                eprintln!(
                                    "wsc: skipped a line of stdin that is not UTF-8 (use --binary)"
                                );
                                continue;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => Input::Failed(e),
                }
            };
            let last = matches!(item, Input::End | Input::Failed(_));
            if tx.send(item).is_err() || last {
                return;
            }
        }
    });
    rx
}

/// Builds the connection options from the arguments.
pub fn builder(args: &ClientArgs, url: &str) -> Result<ClientBuilder, CliError> {
    let mut b = ClientBuilder::new(url).open_timeout(Duration::from_secs_f64(args.connect_timeout));
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| CliError::Usage(format!("header {header:?} is not 'Name: value'")))?;
        let (name, value) = (name.trim(), value.trim());
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let value_ok = value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if !name_ok || !value_ok {
            return Err(CliError::Usage(format!(
                "header {header:?} has characters not allowed in HTTP headers"
            )));
        }
        b = b.header(name, value);
    }
    for p in &args.protocols {
        b = b.protocol(p);
    }
    if let Some(origin) = &args.origin {
        b = b.origin(origin);
    }
    if let Some(max) = args.max_message_size {
        b = b.max_message_size(Some(max)).max_frame_size(Some(max));
    }
    let mut tls = TlsOptions::new().danger_accept_invalid_certs(args.insecure);
    if let Some(ca) = &args.cacert {
        tls = tls.add_ca_pem_file(ca)?;
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        tls = tls.client_cert_pem_files(cert, key)?;
    }
    Ok(b.tls(tls)
        .compression(!args.no_compression)
        .close_timeout(Some(CLOSE_WAIT)))
}

/// Tracks keepalive pings.
struct Keepalive {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    awaiting: Option<Instant>,
    counter: u64,
}

impl Keepalive {
    fn new(args: &ClientArgs) -> Option<Self> {
        let interval = Duration::from_secs_f64(args.ping_interval?);
        let timeout = args
            .ping_timeout
            .map(Duration::from_secs_f64)
            .unwrap_or_else(|| interval.max(Duration::from_secs(1)));
        Some(Keepalive {
            interval,
            timeout,
            next_ping: Instant::now() + interval,
            awaiting: None,
            counter: 0,
        })
    }

    /// Sends a ping when one is due; fails if the last one went unanswered too long.
    fn tick(
        &mut self,
        ws: &mut WebSocket<MaybeTlsStream>,
        format: &Format,
    ) -> Result<(), CliError> {
        let now = Instant::now();
        if let Some(sent) = self.awaiting {
            if now.duration_since(sent) >= self.timeout {
                return Err(CliError::PingTimeout(self.timeout));
            }
        }
        if now >= self.next_ping && ws.can_send() {
            self.counter += 1;
            let payload = format!("wsc-{}", self.counter).into_bytes();
            ws.ping(&payload)?;
            format.note(&format!("> ping {:?}", String::from_utf8_lossy(&payload)));
            if self.awaiting.is_none() {
                self.awaiting = Some(now);
            }
            self.next_ping = now + self.interval;
        }
        Ok(())
    }

    /// Any pong proves the peer alive: a peer may answer only the latest of several pings
    /// (RFC 6455 section 5.5.3), or send unsolicited pongs as a heartbeat.
    fn pong(&mut self) {
        self.awaiting = None;
    }
}

/// Runs a client session until it ends. `stop` is set by the demo's timer; without it, a
/// flag set by Ctrl-C is installed once the connection is open.
pub fn run(args: &ClientArgs, stop: Option<&Arc<AtomicBool>>) -> Result<(), CliError> {
    let url = args.url.as_deref().ok_or_else(|| {
        CliError::Usage("no URL given (try: wsc ws://host:port/path, or wsc --help)".into())
    })?;
    let format = Format {
        json: args.json,
        raw_binary: args.binary,
        verbose: args.verbose,
    };
    if args.count == Some(0) {
        return Err(CliError::Usage("--count must be at least 1".into()));
    }
    let mut ws = builder(args, url)?.connect()?;
    format.handshake(ws.request_head(), ws.response());
    match ws.connection().deflate_params() {
        Some(params) => format.note(&format!("* compression: {params}")),
        None => format.note("* compression: off"),
    }
    ws.set_read_timeout(Some(POLL))?;
    for msg in &args.send {
        ws.send_text(msg)?;
    }
    let stop = stop.cloned().unwrap_or_else(interrupt_flag);
    let stdin = (!args.no_stdin).then(|| spawn_stdin_reader(args.binary));
    Session {
        ws,
        format,
        keepalive: Keepalive::new(args),
        stdin,
        received: 0,
        count: args.count,
        keep_open: args.keep_open,
        closing_since: None,
    }
    .run(&stop)
}

struct Session {
    ws: WebSocket<MaybeTlsStream>,
    format: Format,
    keepalive: Option<Keepalive>,
    stdin: Option<Receiver<Input>>,
    received: u64,
    count: Option<u64>,
    keep_open: bool,
    closing_since: Option<Instant>,
}

impl Session {
    fn run(mut self, stop: &AtomicBool) -> Result<(), CliError> {
        let mut out = io::stdout().lock();
        loop {
            if stop.load(Ordering::Relaxed) {
                self.start_close("stopping")?;
            }
            self.pump_stdin()?;
            if let Some(since) = self.closing_since {
                if since.elapsed() > CLOSE_WAIT {
                    eprintln!(
                        "wsc: the server did not answer the close within {} s",
                        CLOSE_WAIT.as_secs()
                    );
                    return Ok(());
                }
            } else if let Some(k) = self.keepalive.as_mut() {
                k.tick(&mut self.ws, &self.format)?;
            }
            let message = match self.ws.read() {
                Ok(m) => m,
                Err(Error::Timeout(Phase::Read)) => continue,
                Err(e) => return Err(e.into()),
            };
            let counted_out = self.count.is_some_and(|n| self.received >= n);
            if counted_out && message.is_data() {
                // --count reached: what still arrives before the server's close is dropped.
                continue;
            }
            if let Err(e) = self.format.received(&mut out, &message) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    // The reader went away (`| head`): leave quietly, closing politely.
                    let _ = self.ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "")));
                    return Ok(());
                }
                return Err(CliError::Io("cannot write to stdout".into(), e));
            }
            match message {
                Message::Text(_) | Message::Binary(_) => {
                    self.received += 1;
                    if self.count.is_some_and(|n| self.received >= n) {
                        self.start_close("count reached")?;
                    }
                }
                Message::Pong(_) => {
                    if let Some(k) = self.keepalive.as_mut() {
                        k.pong();
                    }
                }
                Message::Ping(_) => self.format.note("> pong (automatic)"),
                Message::Close(frame) => return closed(frame),
            }
        }
    }

    /// Sends what stdin produced since the last look.
    fn pump_stdin(&mut self) -> Result<(), CliError> {
        let Some(rx) = &self.stdin else { return Ok(()) };
        loop {
            let input = match rx.try_recv() {
                Ok(input) => input,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => Input::End,
            };
            match input {
                Input::Text(text) if self.ws.can_send() => self.ws.send_text(&text)?,
                Input::Binary(data) if self.ws.can_send() => self.ws.send_binary(&data)?,
                Input::Text(_) | Input::Binary(_) => {}
                Input::End => {
                    self.stdin = None;
                    if !self.keep_open {
                        self.start_close("end of input")?;
                    }
                    return Ok(());
                }
                Input::Failed(e) => return Err(CliError::Io("cannot read stdin".into(), e)),
            }
        }
    }

    /// Sends close 1000 once; the loop then waits for the server's close.
    fn start_close(&mut self, why: &str) -> Result<(), CliError> {
        if self.closing_since.is_none() && self.ws.can_send() {
            self.format.note(&format!("> close 1000 ({why})"));
            self.ws
                .close(Some(CloseFrame::new(CloseCode::NORMAL, "")))?;
            self.closing_since = Some(Instant::now());
        }
        Ok(())
    }
}

/// The verdict on the server's close frame.
fn closed(frame: Option<CloseFrame>) -> Result<(), CliError> {
    match frame {
        Some(f) if f.code != CloseCode::NORMAL && f.code != CloseCode::GOING_AWAY => {
            Err(CliError::ClosedWithError(f))
        }
        _ => Ok(()),
    }
}

/// A flag set by SIGINT and SIGTERM.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // If registration fails, Ctrl-C simply kills the process as usual.
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    flag
}
