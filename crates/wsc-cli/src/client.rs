//! The client session: connect (and reconnect, with `--reconnect`), send `--send` messages and
//! stdin, print what arrives, and close cleanly on end of input, `--count` or Ctrl-C.

use std::io::{self, BufRead, BufWriter, IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use wsc::reconnect::{Disconnect, Event, Reconnect, Reconnecting};
use wsc::{
    ClientBuilder, CloseCode, CloseFrame, Error, Keepalive, MaybeTlsStream, Message, Phase, Proxy,
    ProxyConfig, WebSocket,
};

use crate::args::ClientArgs;
use crate::exit::CliError;
use crate::output::Format;
use crate::stdout_gone::stdout_gone;
use crate::stop_aware_stdout::{is_stopped_while_blocked, StopAwareStdout};

/// How often the session looks at stdin, timers and Ctrl-C while waiting for messages.
const POLL: Duration = Duration::from_millis(20);

/// How long a write waits for room before the session goes on reading: a peer that takes
/// no more of our input may be blocked writing to us (an echo), and every message read
/// frees it a little; waiting `POLL` per message capped a big echo at about 1.5 MB/s.
const WRITE_POLL: Duration = Duration::from_millis(1);

/// How long to wait for the server's close after sending ours.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// How long the end of input waits for quiet without `--linger`: many servers drop the
/// replies they owe once our close arrives, so `echo request | wsc URL` closing at once
/// printed nothing from them.
const DEFAULT_LINGER: Duration = Duration::from_secs(1);

/// The end of input waits for quiet at most this many lingers: a server that sends more
/// often than that (a ticker, heartbeats) never goes quiet, and `echo request | wsc URL`
/// must still end.
const LINGER_BOUND: u32 = 10;

/// The largest message accepted without `--max-message-size`.
const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Stdout's buffer: a message up to this size goes out in one flush's writes.
const OUT_BUFFER: usize = 64 << 10;

/// Stdout as the session writes it.
type Stdout<'a> = BufWriter<StopAwareStdout<'a>>;

/// Input already waiting is queued up to this much before it is written: one write for many
/// lines, not one each (a file of 300,000 lines made 300,000 system calls).
const STDIN_BATCH: usize = 64 << 10;

/// Input from stdin, read on its own thread.
enum Input {
    Text(String),
    Binary(Vec<u8>),
    End,
    Failed(io::Error),
}

/// How stdin becomes messages.
#[derive(Clone, Copy)]
struct StdinMode {
    binary: bool,
    /// `--whole`: all of it, as one message.
    whole: bool,
    /// The largest message, in bytes (`--max-message-size`): the bound of `--whole`'s one
    /// message and of each line, so that a stream without newlines (a binary file,
    /// `/dev/zero`) is an error, not a line that grows until memory runs out.
    limit: usize,
}

/// What sending input comes to: a write that timed out left it queued (the session's next
/// read writes it), and a server gone is no error here: what it sent before (its close and
/// reason, above all) is still read, and the reads say how the connection ended.
fn unless_lost(ws: &WebSocket<MaybeTlsStream>, sent: Result<(), Error>) -> Result<(), CliError> {
    match sent {
        Err(Error::ConnectionReset) if ws.connection().is_output_lost() => Ok(()),
        sent => sent_or_queued(sent),
    }
}

fn spawn_stdin_reader(mode: StdinMode) -> Receiver<Input> {
    let (tx, rx) = mpsc::sync_channel(64);
    thread::spawn(move || {
        let stdin = io::stdin();
        let mut stdin = stdin.lock();
        if mode.whole {
            let _ = tx.send(read_whole(&mut stdin, mode.limit, mode.binary));
            let _ = tx.send(Input::End);
            return;
        }
        let mut lines = 0u64;
        loop {
            let item = if mode.binary {
                // Messages no bigger than the limit, as lines are (the peer's is likely no
                // larger than ours).
                let mut buf = vec![0u8; mode.limit.min(64 << 10)];
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
                lines += 1;
                next_line(&mut stdin, mode.limit, lines)
            };
            let last = matches!(item, Input::End | Input::Failed(_));
            if tx.send(item).is_err() || last {
                return;
            }
        }
    });
    rx
}

/// Line `number` (from 1) of `input` as a text message, its line end dropped. A line over
/// `limit` bytes or not UTF-8 is an error, which ends the input: skipping it would send the
/// lines after it as if nothing were missing.
fn next_line(input: &mut impl BufRead, limit: usize, number: u64) -> Input {
    let mut line = Vec::new();
    // Room for the limit and a `\r\n`: one byte more is a line too long.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(2);
    match input.take(cap).read_until(b'\n', &mut line) {
        Ok(0) => return Input::End,
        Ok(_) => {}
        Err(e) => return Input::Failed(e),
    }
    drop_line_end(&mut line);
    if line.len() > limit {
        return Input::Failed(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "line {number} is longer than {limit} bytes, the --max-message-size limit \
                 (raise it, or send the data with --binary)"
            ),
        ));
    }
    match String::from_utf8(line) {
        Ok(text) => Input::Text(text),
        Err(e) => Input::Failed(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "line {number} is not UTF-8 text (an invalid byte at offset {} of the \
                 line): a text message must be UTF-8; send binary data with --binary",
                e.utf8_error().valid_up_to()
            ),
        )),
    }
}

/// Builds the connection options from the arguments.
pub fn builder(args: &ClientArgs, url: &str) -> Result<ClientBuilder, CliError> {
    // The whole opening, and so each of its phases too (whose own defaults, 30 s, would
    // otherwise cut a longer --connect-timeout short).
    let opening = Duration::from_secs_f64(args.connect_timeout);
    let mut b = ClientBuilder::new(url)
        .open_timeout(opening)
        .connect_timeout(opening)
        .handshake_timeout(opening);
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
    // The message limit bounds its frames too, a compressed one by its inflated size (no
    // frame limit: one equal to it refused a message at the limit that deflate had made a
    // few bytes bigger on the wire).
    let max = args.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE);
    b = b.max_message_size(Some(max));
    let tls = crate::tls_args::options(args)?;
    if let Some(proxy) = explicit_proxy(args) {
        let proxy = Proxy::parse(proxy).map_err(|e| {
            let shown = without_password(proxy);
            CliError::Usage(format!("--proxy {shown:?}: {e}"))
        })?;
        b = b.proxy(proxy);
    } else if args.no_proxy || args.proxy.is_some() {
        // `--proxy ""` connects directly, as curl takes it (a script's unset variable).
        b = b.proxy(ProxyConfig::None);
    }
    for (host, addrs) in &args.resolve {
        b = b.resolve(host, addrs.iter().copied());
    }
    if args.location {
        b = b
            .max_redirects(args.max_redirects)
            .allow_insecure_redirects(args.allow_insecure_redirects);
    }
    Ok(b.tls(tls)
        .compression(!args.no_compression)
        .close_timeout(Some(CLOSE_WAIT)))
}

/// The connection: one, or one that is re-opened after drops (`--reconnect`).
// One per process: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Link {
    Direct(WebSocket<MaybeTlsStream>),
    Reconnecting(Reconnecting),
}

impl Link {
    /// The open connection, if there is one (none while reconnecting).
    fn ws(&mut self) -> Option<&mut WebSocket<MaybeTlsStream>> {
        match self {
            Link::Direct(ws) => Some(ws),
            Link::Reconnecting(r) => r.get_mut(),
        }
    }

    fn can_send(&mut self) -> bool {
        self.ws().is_some_and(|ws| ws.can_send())
    }

    fn next_event(&mut self) -> Result<Event, Error> {
        match self {
            Link::Direct(ws) => ws.read().map(Event::Message),
            Link::Reconnecting(r) => r.next_event(),
        }
    }

    /// Once we close: no more reconnecting, the connection ends as a direct one does (and
    /// says how, which a drop reported by the reconnecting client no longer can).
    fn stop_reconnecting(&mut self) {
        let taken = match self {
            Link::Reconnecting(r) => r.take(),
            Link::Direct(_) => None,
        };
        if let Some(ws) = taken {
            *self = Link::Direct(ws);
        }
    }

    /// `--reconnect` gave up: `--reconnect-max-attempts` connections in a row dropped
    /// before they were stable.
    fn has_given_up(&self) -> bool {
        matches!(self, Link::Reconnecting(r) if r.has_given_up())
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
        escape_text: io::stdout().is_terminal(),
    };
    if args.count == Some(0) {
        return Err(CliError::Usage("--count must be at least 1".into()));
    }
    // Neither a read nor a write waits long: the session interleaves them, so that a peer
    // blocked writing to us (an echo of a big input) is read while our input waits.
    let mut b = builder(args, url)?
        .read_timeout(Some(POLL))
        .write_timeout(Some(WRITE_POLL));
    if let Some(interval) = args.ping_interval {
        let interval = Duration::from_secs_f64(interval);
        let timeout = args
            .ping_timeout
            .map(Duration::from_secs_f64)
            .unwrap_or_else(|| interval.max(Duration::from_secs(1)));
        b = b.keepalive(Keepalive::new(interval, timeout));
        format.note(&format!(
            "* keepalive: a ping every {:.1} s, each answered within {:.1} s",
            interval.as_secs_f64(),
            timeout.as_secs_f64()
        ));
    }
    let proxy = b.proxy_to_use().ok().flatten().map(|p| p.display_name());
    if let Some(proxy) = &proxy {
        // Which way the connection goes, before it is tried: also shown when it fails.
        let from = if explicit_proxy(args).is_some() {
            "--proxy"
        } else {
            "from the environment"
        };
        format.note(&format!("* proxy: {proxy} ({from})"));
    }
    let secure = url
        .get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"));
    let with_cert = args.cert.is_some();
    // Until the connection is open there is nothing to close: a stop signal ends the
    // process at once, as by default, also when a non-interactive shell started us with
    // SIGINT ignored (a connect or handshake would otherwise run to its timeout).
    let opening = Arc::new(AtomicBool::new(true));
    exit_on_signal_while(&opening);
    let mut link = if args.reconnect {
        let mut policy = Reconnect::new().max_attempts(args.reconnect_max_attempts);
        if let Some(max) = args.reconnect_max_delay {
            policy = policy.max_delay(Duration::from_secs_f64(max));
        }
        let mut r = b
            .connect_reconnecting(policy)
            .inspect_err(|e| format.refusal(e))
            .map_err(|e| CliError::opening(e, secure, with_cert, proxy.as_deref()))?;
        for msg in &args.send {
            // Queued if not written yet (the session's writes wait only WRITE_POLL).
            sent_or_queued(r.subscribe(msg.as_str()))?;
        }
        Link::Reconnecting(r)
    } else {
        let mut ws = b
            .connect()
            .inspect_err(|e| format.refusal(e))
            .map_err(|e| CliError::opening(e, secure, with_cert, proxy.as_deref()))?;
        for msg in &args.send {
            // Queued whole (a few arguments' worth): the session writes them as the server
            // reads, before stdin's input.
            ws.queue(msg.as_str())?;
        }
        Link::Direct(ws)
    };
    // Before anything is printed of the open connection: from the first line that says it
    // is open, Ctrl-C closes it cleanly.
    let stop = stop.cloned().unwrap_or_else(interrupt_flag);
    opening.store(false, Ordering::Relaxed);
    let Some(ws) = link.ws() else {
        unreachable!("a new link is connected")
    };
    if let Some(tls) = tls_summary(ws.get_ref()) {
        format.note(&format!("* TLS: {tls}"));
    }
    format.handshake(ws.request_head(), ws.response());
    match ws.connection().deflate_params() {
        Some(params) => format.note(&format!("* compression: {params}")),
        None => format.note("* compression: off"),
    }
    let down = Arc::new(AtomicBool::new(false));
    if args.reconnect {
        exit_on_signal_while(&down);
    }
    let mode = StdinMode {
        binary: args.binary,
        whole: args.whole,
        limit: args.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE),
    };
    let stdin = (!args.no_stdin).then(|| spawn_stdin_reader(mode));
    Session {
        link,
        format,
        idle_timeout: args.idle_timeout.map(Duration::from_secs_f64),
        last_message: Instant::now(),
        stdin,
        received: 0,
        count: args.count,
        keep_open: args.keep_open,
        linger: args.linger.map(Duration::from_secs_f64),
        // Without stdin, the --send messages are all the input: --linger closes after them.
        input_ended: (args.no_stdin && args.linger.is_some()).then(Instant::now),
        closing_since: None,
        close_out: false,
        down,
        queued_at_close: usize::MAX,
        stdout_gone: false,
        fault: None,
        idle_out: None,
        shown_rtt: None,
        ending: CloseFrame::new(
            CloseCode(args.close_code.unwrap_or(CloseCode::NORMAL.0)),
            args.close_reason.clone().unwrap_or_default(),
        ),
        sent_close: None,
    }
    .run(&stop)
}

struct Session {
    link: Link,
    format: Format,
    /// The close of an end as asked (end of input, --count, a stop signal): 1000 and no
    /// reason, or --close-code and --close-reason.
    ending: CloseFrame,
    /// The code of the close we sent, if we did.
    sent_close: Option<CloseCode>,
    idle_timeout: Option<Duration>,
    last_message: Instant,
    stdin: Option<Receiver<Input>>,
    received: u64,
    count: Option<u64>,
    keep_open: bool,
    /// `--linger`: how long the connection stays after the end of input with nothing arriving.
    linger: Option<Duration>,
    /// When input ended, until the close it calls for is sent.
    input_ended: Option<Instant>,
    closing_since: Option<Instant>,
    /// While closing: our close, and all our output before it, had been written when last
    /// looked at (before the read that waits for the server's answer).
    close_out: bool,
    /// Set while `--reconnect` waits between connections (see `exit_on_signal_while`).
    down: Arc<AtomicBool>,
    /// While closing: our output still queued when last looked at.
    queued_at_close: usize,
    /// Nobody reads stdout any more (`| head` has exited), or it cannot be written to.
    stdout_gone: bool,
    /// A local I/O fault (stdout cannot be written to, stdin cannot be read), and what
    /// failed: the session closes with 1001, then ends with it.
    fault: Option<(&'static str, io::Error)>,
    /// `--idle-timeout` ran out: the session closes with 1001, then ends with it.
    idle_out: Option<Duration>,
    /// The keepalive round trip last shown (`-v`, `--json`): shown again only when a pong
    /// gives a new one.
    shown_rtt: Option<Duration>,
}

impl Session {
    fn run(mut self, stop: &AtomicBool) -> Result<(), CliError> {
        let ended = self.serve(stop);
        match (self.fault.take(), self.idle_out.take()) {
            // Output not all written, or input not all read: the first fault, however the
            // close went.
            (Some((what, e)), _) => Err(CliError::Io(what.into(), e)),
            // Why the session ended, however the close went.
            (None, Some(limit)) => Err(CliError::Idle(limit)),
            (None, None) => ended,
        }
    }

    /// The end of reconnecting, with the error wsc exits with: in `--json` mode also the
    /// last line, so that a consumer of the events sees why they stop.
    fn gave_up(&mut self, out: &mut impl Write, error: CliError) -> Result<(), CliError> {
        let said = self.format.event_gave_up(out, &error.to_string());
        self.note_stdout(said);
        Err(error)
    }

    /// The verdict on the server's close frame: 1000, 1001, or the code of our own close
    /// echoed back (--close-code) end cleanly.
    fn closed(&self, frame: Option<CloseFrame>) -> Result<(), CliError> {
        match frame {
            Some(f)
                if f.code != CloseCode::NORMAL
                    && f.code != CloseCode::GOING_AWAY
                    && Some(f.code) != self.sent_close =>
            {
                Err(CliError::ClosedWithError(f))
            }
            _ => Ok(()),
        }
    }

    /// Writes out what was printed, unless nobody reads it any more.
    fn flush_stdout(&mut self, out: &mut impl Write) {
        if !self.stdout_gone {
            let flushed = out.flush();
            self.note_stdout(flushed);
        }
    }

    /// Takes in what writing to stdout came to.
    fn note_stdout(&mut self, written: io::Result<()>) {
        match written {
            Ok(()) => {}
            // The reader went away (`| head`): the next turn closes with 1001 and waits for
            // the server's close, as Ctrl-C does with 1000.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.stdout_gone = true,
            // A stop signal while the reader took nothing: what still comes goes nowhere, as
            // for a reader gone, and the close the stop calls for goes out.
            Err(e) if is_stopped_while_blocked(&e) => self.stdout_gone = true,
            // A full disk and the like: closed the same way (the server sees a client going
            // away, not a dropped connection), the error reported once closed.
            Err(e) => {
                self.stdout_gone = true;
                self.fault.get_or_insert(("cannot write to stdout", e));
            }
        }
    }

    /// The keepalive round trip, if the pong just read gave a new one (not the pong of a ping
    /// of ours, or no keepalive: none).
    fn new_round_trip(&mut self) -> Option<Duration> {
        let rtt = self.link.ws().and_then(|ws| ws.latency())?;
        if self.shown_rtt == Some(rtt) {
            return None;
        }
        self.shown_rtt = Some(rtt);
        Some(rtt)
    }

    /// The session, until the connection ends, and what it printed flushed.
    fn serve(&mut self, stop: &AtomicBool) -> Result<(), CliError> {
        // Buffered here (not by std's stdout: see `stop_aware_stdout` for the stop signal it
        // heeds), and flushed before anything else is said and before a read would wait.
        let mut out = BufWriter::with_capacity(OUT_BUFFER, StopAwareStdout::new(stop));
        let ended = self.session(stop, &mut out);
        self.flush_stdout(&mut out);
        ended
    }

    /// The session's turns, until the connection ends.
    fn session(&mut self, stop: &AtomicBool, out: &mut Stdout<'_>) -> Result<(), CliError> {
        // Whether this turn's read takes only what is in the connection's buffer already:
        // messages printed are flushed when a read would wait for more, not one by one (a
        // write and a poll per message held a fast feed to a file back). Tried once per
        // wait: what is buffered may be a frame's first part only.
        let mut buffered_only = false;
        let mut gone_checked: Option<Instant> = None;
        loop {
            buffered_only = !buffered_only
                && !out.buffer().is_empty()
                && self
                    .link
                    .ws()
                    .is_some_and(|ws| ws.connection().buffered_input() > 0);
            if !buffered_only {
                self.flush_stdout(out);
            }
            let stopped = stop.load(Ordering::Relaxed);
            // Looked at every POLL, not only when a write fails: a quiet session prints
            // nothing that would fail.
            if !gone_checked.is_some_and(|at| at.elapsed() < POLL) {
                gone_checked = Some(Instant::now());
                self.stdout_gone = self.stdout_gone || stdout_gone();
            }
            let leaving = if stopped {
                Some((CloseCode::NORMAL, "stopping"))
            } else if let Some((what, _)) = &self.fault {
                Some((CloseCode::GOING_AWAY, *what))
            } else if self.stdout_gone {
                // Going away, as a browser leaving the page: nobody reads what comes.
                Some((CloseCode::GOING_AWAY, "stdout closed"))
            } else {
                None
            };
            if let Some((code, why)) = leaving {
                if self.closing_since.is_none() && !self.link.can_send() {
                    return match self.link {
                        // Between connections (--reconnect): nothing to close.
                        Link::Reconnecting(_) if stopped => Err(CliError::Interrupted),
                        // The reader is done with us (`| head`): not a failure (a fault is
                        // reported by `run`).
                        Link::Reconnecting(_) => Ok(()),
                        // The server is gone (our output lost): nothing to close either.
                        Link::Direct(_) => Ok(()),
                    };
                }
                self.start_close(out, code, why)?;
            }
            self.pump_stdin()?;
            if let Some(ended) = self.input_ended {
                let linger = self.linger.unwrap_or(DEFAULT_LINGER);
                let quiet = ended.max(self.last_message).elapsed() >= linger;
                if quiet || ended.elapsed() >= linger.saturating_mul(LINGER_BOUND) {
                    // While reconnecting there is nothing to close yet: again once back.
                    self.start_close(out, CloseCode::NORMAL, "end of input")?;
                    if self.closing_since.is_some() {
                        self.input_ended = None;
                    }
                }
            }
            if let Some(since) = self.closing_since {
                let (queued, unsent, lost) = self.link.ws().map_or((0, false, true), |ws| {
                    let conn = ws.connection();
                    (
                        conn.queued_output(),
                        ws.has_unsent_output(),
                        conn.is_output_lost(),
                    )
                });
                self.close_out = !unsent && !lost;
                let moved = queued > 0 && queued < self.queued_at_close;
                self.queued_at_close = queued;
                if moved {
                    // The close waits behind our output, which the server is still taking:
                    // its clock runs from the last progress.
                    self.closing_since = Some(Instant::now());
                } else if since.elapsed() > CLOSE_WAIT {
                    // Also what the TLS stream still holds, past the connection's queue.
                    if unsent {
                        // Input that never went out: not a clean end.
                        return Err(CliError::Unsent(CLOSE_WAIT));
                    }
                    // Not the clean end the exit status 0 promises.
                    return Err(CliError::NoCloseReply(CLOSE_WAIT));
                }
            } else if let Some(limit) = self.idle_timeout {
                // Between connections (--reconnect) the clock waits: it counts per connection.
                if self.last_message.elapsed() >= limit && !self.down.load(Ordering::Relaxed) {
                    if let Link::Reconnecting(link) = &mut self.link {
                        // A silent feed is replaced (closed with 1001), not ended.
                        let idle = CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout");
                        // (Waits for the server's answer, up to the close timeout.)
                        if link.reconnect(Some(idle))?.is_some() {
                            let why = format!(
                                "no message in {:.1} s (--idle-timeout)",
                                limit.as_secs_f64()
                            );
                            if self.link.has_given_up() {
                                return self.gave_up(out, CliError::GaveUp(why));
                            }
                            self.down.store(true, Ordering::Relaxed);
                            // A Ctrl-C during that wait: no "reconnecting" to take back.
                            if stop.load(Ordering::Relaxed) {
                                return Err(CliError::Interrupted);
                            }
                            let said = self.format.event_disconnected(out, &why);
                            self.note_stdout(said);
                            continue;
                        }
                    }
                    if !self.link.can_send() {
                        return Err(CliError::Idle(limit));
                    }
                    // Closed as any other way out is, before the exit says why.
                    self.idle_out = Some(limit);
                    self.start_close(out, CloseCode::GOING_AWAY, "idle timeout")?;
                }
            }
            if let Some(ws) = self.link.ws() {
                // Back within POLL even while a big message trickles in: Ctrl-C and the
                // clocks above are looked at meanwhile.
                let wait = if buffered_only { Duration::ZERO } else { POLL };
                ws.set_read_deadline(Some(Instant::now() + wait));
            }
            let event = self.link.next_event();
            if !matches!(event, Ok(Event::Message(_)) | Err(Error::Timeout(_))) {
                // Said after the messages before it.
                self.flush_stdout(out);
            }
            let message = match event {
                Ok(Event::Message(m)) => {
                    buffered_only = false;
                    m
                }
                Ok(Event::Disconnected(why)) => {
                    if let Disconnect::Failed(e) = &why {
                        self.note_protocol_close(e);
                    }
                    if let Disconnect::Closed(frame) = &why {
                        // As without --reconnect: among the messages (--json), or noted (-v).
                        let close = Message::Close(frame.clone());
                        let printed = self.format.received(out, &close, None);
                        self.note_stdout(printed);
                    }
                    if self.closing_since.is_some() {
                        return match why {
                            Disconnect::Closed(frame) => self.closed(frame),
                            Disconnect::Failed(e) => self.closing_failed(e),
                            // (A connection is replaced only by --idle-timeout, which does
                            // not run while we close.)
                            _ => self.closed(None),
                        };
                    }
                    if self.link.has_given_up() {
                        // Not a clean end, whatever the last close said.
                        return self.gave_up(out, CliError::GaveUp(why.to_string()));
                    }
                    // Down before it is said: a Ctrl-C by whoever reads it ends the wait (130).
                    self.down.store(true, Ordering::Relaxed);
                    let said = self.format.event_disconnected(out, &why.to_string());
                    self.note_stdout(said);
                    if stop.load(Ordering::Relaxed) {
                        return Err(CliError::Interrupted);
                    }
                    continue;
                }
                Ok(Event::AttemptFailed(f)) => {
                    let said = self.format.event_attempt_failed(
                        out,
                        f.attempt,
                        &f.error,
                        f.retry_in,
                        f.retry_after,
                    );
                    self.note_stdout(said);
                    continue;
                }
                Ok(Event::Reconnected(r)) => {
                    self.down.store(false, Ordering::Relaxed);
                    self.last_message = Instant::now();
                    let said = self.format.event_reconnected(out, r.attempts, r.downtime);
                    self.note_stdout(said);
                    continue;
                }
                // (Events of later versions.)
                Ok(_) => continue,
                // Nothing arrived, or the peer took none of our output, within POLL.
                Err(Error::Timeout(Phase::Read | Phase::Write)) => continue,
                Err(e) if self.closing_since.is_some() => return self.closing_failed(e),
                // Said as such: the last attempt's error alone read as if the first
                // connection had failed.
                Err(e) if self.link.has_given_up() => {
                    return self.gave_up(out, CliError::ReconnectFailed(e))
                }
                Err(e) => {
                    self.note_protocol_close(&e);
                    return Err(e.into());
                }
            };
            if message.is_data() {
                self.last_message = Instant::now();
            }
            let counted_out = self.count.is_some_and(|n| self.received >= n);
            if counted_out && message.is_data() {
                // --count reached: what still arrives before the server's close is dropped.
                continue;
            }
            // The answer to a --ping-interval ping: how long it took (a new figure).
            let rtt = match message {
                Message::Pong(_) => self.new_round_trip(),
                _ => None,
            };
            // Once nobody reads stdout, the messages that still come before the server's
            // close go nowhere (control frames are still noted on stderr).
            if !message.is_data() {
                // Its note on stderr comes after the messages before it.
                self.flush_stdout(out);
            }
            if !(self.stdout_gone && message.is_data()) {
                let printed = self.format.received(out, &message, rtt);
                self.note_stdout(printed);
            }
            if !message.is_data() {
                // Its --json line before the notes that follow it (a round trip, our pong).
                self.flush_stdout(out);
            }
            match message {
                Message::Text(_) | Message::Binary(_) => {
                    self.received += 1;
                    if self.count.is_some_and(|n| self.received >= n) {
                        self.start_close(out, CloseCode::NORMAL, "count reached")?;
                    }
                }
                Message::Pong(_) => {
                    if let Some(rtt) = rtt {
                        let ms = rtt.as_secs_f64() * 1e3;
                        self.format.note(&format!("* round trip: {ms:.2} ms"));
                    }
                }
                // Answered only while open: after our close, nothing more is sent.
                Message::Ping(_) if self.link.can_send() => self.format.note("> pong (automatic)"),
                Message::Ping(_) => {}
                Message::Close(frame) => {
                    // The server's close, not its answer to ours (Ctrl-C, end of input).
                    let short = self
                        .count
                        .filter(|&n| self.received < n && self.closing_since.is_none());
                    // An error code says more than the count: 11 all the same.
                    self.closed(frame.clone())?;
                    return match short {
                        Some(count) => Err(CliError::CountShort {
                            received: self.received,
                            count,
                            frame,
                        }),
                        None => Ok(()),
                    };
                }
            }
        }
    }

    /// Sends what stdin produced since the last look.
    fn pump_stdin(&mut self) -> Result<(), CliError> {
        let Some(rx) = &self.stdin else { return Ok(()) };
        // While reconnecting, input waits in the channel for the new connection.
        let Some(ws) = self.link.ws() else {
            return Ok(());
        };
        // Input that is waiting already goes out in one write, up to STDIN_BATCH: a file
        // or a fast producer is not sent a line per system call.
        let mut fed = false;
        loop {
            // Output the peer has not taken yet holds more input back. The session's next
            // read writes it first, as much as the socket takes within WRITE_POLL: a second
            // wait for room here would only slow the reads that make room (an echo).
            let queued = ws.connection().queued_output();
            if (!fed && ws.connection().has_pending_output()) || queued >= STDIN_BATCH {
                break;
            }
            let input = match rx.try_recv() {
                Ok(input) => input,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => Input::End,
            };
            let fed_one = match input {
                Input::Text(text) if ws.can_send() => ws.feed(Message::text(text)),
                Input::Binary(data) if ws.can_send() => ws.feed(Message::binary(data)),
                Input::Text(_) | Input::Binary(_) => Ok(()),
                Input::End => {
                    self.stdin = None;
                    // Closed once quiet for --linger (1 s without it); with --count
                    // alone, the count decides; with --keep-open, never.
                    if !self.keep_open && (self.count.is_none() || self.linger.is_some()) {
                        self.input_ended = Some(Instant::now());
                    }
                    break;
                }
                Input::Failed(e) => {
                    // Closed with 1001 (the server sees a client going away, not a dropped
                    // connection), then reported.
                    self.stdin = None;
                    self.fault = Some(("cannot read stdin", e));
                    break;
                }
            };
            fed = true;
            unless_lost(ws, fed_one)?;
        }
        if fed {
            let flushed = ws.flush();
            unless_lost(ws, flushed)?;
        }
        Ok(())
    }

    /// `-v`: the close the library sent for the server's protocol violation, as the closes
    /// we start are shown. None goes out after our own close, nor to a server gone.
    fn note_protocol_close(&mut self, e: &Error) {
        let Error::Protocol(violation) = e else {
            return;
        };
        let output_lost = self
            .link
            .ws()
            .is_some_and(|ws| ws.connection().is_output_lost());
        if self.closing_since.is_none() && !output_lost {
            self.format
                .note(&format!("> close {}", violation.close_code()));
        }
    }

    /// How the connection ending with `e` while we closed it ends the session. A server that
    /// answers our close by ending TCP (a FIN, no close frame of its own) is common, and had
    /// read all we sent once our close and everything before it were out: the clean end the
    /// user asked for, not a lost connection. A reset is not that: a server that closes with
    /// our data unread resets.
    fn closing_failed(&mut self, e: Error) -> Result<(), CliError> {
        let ended = self
            .link
            .ws()
            .is_some_and(|ws| ws.connection().peer_ended_stream());
        match e {
            Error::ConnectionReset if self.close_out && ended => {
                self.format
                    .note("* the server ended the connection without answering our close");
                Ok(())
            }
            e => Err(closing_error(e)),
        }
    }

    /// Sends our close once; the loop then waits for the server's close.
    fn start_close(
        &mut self,
        out: &mut impl Write,
        code: CloseCode,
        why: &str,
    ) -> Result<(), CliError> {
        if self.closing_since.is_some() {
            return Ok(());
        }
        // Its note on stderr comes after the lines printed before it.
        self.flush_stdout(out);
        // An end as asked: with the code and reason asked for, if any.
        let frame = match code {
            CloseCode::NORMAL => self.ending.clone(),
            code => CloseFrame::new(code, ""),
        };
        if let Some(ws) = self.link.ws().filter(|ws| ws.can_send()) {
            self.format
                .note(&format!("> close {} ({why})", frame.code.0));
            self.sent_close = Some(frame.code);
            // Possibly queued behind output the peer has not taken yet.
            sent_or_queued(ws.close(Some(frame)))?;
            self.closing_since = Some(Instant::now());
            self.link.stop_reconnecting();
        }
        Ok(())
    }
}

/// The error that ended the connection while we closed it. The library's close timeout
/// (`CLOSE_WAIT` too) may run out before the session's own clock looks: the same exit.
fn closing_error(e: Error) -> CliError {
    match e {
        Error::Timeout(Phase::Close) => CliError::NoCloseReply(CLOSE_WAIT),
        e => e.into(),
    }
}

/// All of `input` as one message (`--whole`), refused past `limit` bytes (the peer's limit
/// is likely no larger than ours) without holding more than that.
fn read_whole(input: &mut impl Read, limit: usize, binary: bool) -> Input {
    let mut data = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    if let Err(e) = input.take(cap).read_to_end(&mut data) {
        return Input::Failed(e);
    }
    if data.len() > limit {
        return Input::Failed(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("stdin holds more than {limit} bytes, the --max-message-size limit"),
        ));
    }
    if binary {
        return Input::Binary(data);
    }
    // The newline `echo` and editors end a file with.
    drop_line_end(&mut data);
    match String::from_utf8(data) {
        Ok(text) => Input::Text(text),
        Err(_) => Input::Failed(io::Error::new(
            io::ErrorKind::InvalidData,
            "stdin is not UTF-8 text (send it with --binary)",
        )),
    }
}

/// Drops one final `\n` or `\r\n`.
fn drop_line_end(data: &mut Vec<u8>) {
    if data.last() == Some(&b'\n') {
        data.pop();
        if data.last() == Some(&b'\r') {
            data.pop();
        }
    }
}

/// The TLS session in brief (version, cipher suite, ALPN), for `-v`.
fn tls_summary(stream: &MaybeTlsStream) -> Option<String> {
    let MaybeTlsStream::Tls(tls) = stream else {
        return None;
    };
    let conn = &tls.conn;
    let version = conn
        .protocol_version()
        .map_or("?".to_string(), |v| format!("{v:?}"));
    let suite = conn
        .negotiated_cipher_suite()
        .map_or("?".to_string(), |s| format!("{:?}", s.suite()));
    let alpn = conn.alpn_protocol().map_or("none".to_string(), |p| {
        String::from_utf8_lossy(p).into_owned()
    });
    Some(format!("{version}, {suite}, ALPN {alpn}"))
}

/// The proxy URL of `--proxy`, unless empty (`--proxy ""`: none).
fn explicit_proxy(args: &ClientArgs) -> Option<&str> {
    args.proxy.as_deref().filter(|p| !p.trim().is_empty())
}

/// A proxy URL as it may be shown: a password in it replaced by `***` (an error message
/// ends up in logs and terminals' scrollback).
fn without_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    // The last @ of all: a password may hold a raw / (masking too much is the safe side).
    let Some(at) = url[start..].rfind('@').map(|i| start + i) else {
        return without_unlikely_port(url, start);
    };
    let Some(colon) = url[start..at].find(':').map(|i| start + i) else {
        return url.to_string();
    };
    format!("{}:***{}", &url[..colon], &url[at..])
}

/// A proxy URL with no `@`, as it may be shown: `host:port` (and a final `/`) as it is;
/// anything else after a colon is perhaps a password whose host was left out
/// (`http://alice:s3cret`, `http://alice:pa/ss`), masked to the end.
fn without_unlikely_port(url: &str, start: usize) -> String {
    let rest = &url[start..];
    // An IPv6 literal's colons are inside its brackets: the port's is the one after them.
    let host_end = match rest.starts_with('[') {
        true => rest.find(']').map_or(rest.len(), |i| i + 1),
        false => 0,
    };
    let Some(colon) = rest[host_end..].find(':').map(|i| start + host_end + i) else {
        return url.to_string();
    };
    let after = &url[colon + 1..];
    let port = after.strip_suffix('/').unwrap_or(after);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        return url.to_string();
    }
    format!("{}:***", &url[..colon])
}

/// A send's result, where a write that timed out (the session's writes wait only
/// `WRITE_POLL`) is no error: what was not written stays queued and goes out as the session
/// goes on.
fn sent_or_queued(sent: Result<(), Error>) -> Result<(), CliError> {
    match sent {
        Ok(()) | Err(Error::Timeout(Phase::Write)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// SIGINT, SIGTERM and SIGHUP, with the status a process they end has by convention
/// (128 + number).
const STOP_SIGNALS: [(i32, i32); 3] = [
    (signal_hook::consts::SIGINT, 130),
    (signal_hook::consts::SIGTERM, 143),
    // The terminal or the ssh session went away: close cleanly all the same.
    (signal_hook::consts::SIGHUP, 129),
];

/// The stop signals to handle: all but a SIGHUP ignored at start (`nohup`), which stays
/// ignored. SIGINT is handled even when ignored at start: a non-interactive shell ignores it
/// in its background jobs (a CI runner's, say), and Ctrl-C must still close cleanly there.
fn heeded_signals() -> impl Iterator<Item = (i32, i32)> {
    STOP_SIGNALS
        .into_iter()
        .filter(|&(signal, _)| !(signal == signal_hook::consts::SIGHUP && is_ignored(signal)))
}

/// Whether `signal`'s disposition is SIG_IGN.
fn is_ignored(signal: i32) -> bool {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action, sigaction only writes the current one into `old`,
    // which is zeroed memory of the right type.
    let read = unsafe { libc::sigaction(signal, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zeroed, then filled in by sigaction: a valid value either way.
    read == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Makes SIGINT, SIGTERM and SIGHUP end the process at once (130, 143, 129) while `flag` is
/// set: while the connection opens, or `--reconnect` waits between attempts, there is no
/// connection to close.
fn exit_on_signal_while(flag: &Arc<AtomicBool>) {
    for (signal, status) in heeded_signals() {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, status, flag.clone());
    }
}

/// A flag set by SIGINT, SIGTERM and SIGHUP.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for (signal, status) in heeded_signals() {
        // A second signal ends the process at once; the first only sets the flag. If
        // registration fails, Ctrl-C kills the process as usual.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, status, flag.clone());
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    flag
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn proxy_passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(
            without_password("http://alice:hunter2@127.0.0.1:80x"),
            "http://alice:***@127.0.0.1:80x"
        );
        assert_eq!(
            without_password("socks5://a:p@ss@proxy:1080"),
            "socks5://a:***@proxy:1080"
        );
        // A raw / in the password does not end it.
        assert_eq!(
            without_password("http://alice:hun/ter2@127.0.0.1:3128"),
            "http://alice:***@127.0.0.1:3128"
        );
        assert_eq!(
            without_password("alice:pw@proxy:3128"),
            "alice:***@proxy:3128"
        );
        assert_eq!(
            without_password("http://alice@proxy:3128"),
            "http://alice@proxy:3128"
        );
        // The host left out: what follows the colon is no port, so perhaps a password.
        assert_eq!(without_password("http://alice:s3cret"), "http://alice:***");
        assert_eq!(
            without_password("socks5h://alice:s3cret/"),
            "socks5h://alice:***"
        );
        // A raw / in it, or digits and more: masked to the end.
        assert_eq!(without_password("http://alice:pa/ss"), "http://alice:***");
        assert_eq!(without_password("http://alice:1234/x"), "http://alice:***");
        assert_eq!(without_password("alice:s3cret"), "alice:***");
        // Ports and IPv6 literals are shown as they are.
        assert_eq!(without_password("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(without_password("http://proxy:3128/"), "http://proxy:3128/");
        assert_eq!(without_password("http://[::1]"), "http://[::1]");
        assert_eq!(without_password("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(without_password("proxy"), "proxy");
    }
}
