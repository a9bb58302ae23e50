//! Reconnecting after a drop: a backoff policy, the events that tell a feed consumer about
//! the gap, and the blocking [`Reconnecting`] client that re-opens the connection and
//! replays its subscription messages.
//!
//! ```no_run
//! use std::time::Duration;
//! use wsc::reconnect::{Event, Reconnect};
//!
//! let mut feed = wsc::ClientBuilder::new("wss://stream.example.com/ws")
//!     .keepalive(wsc::Keepalive::new(Duration::from_secs(20), Duration::from_secs(10)))
//!     .connect_reconnecting(Reconnect::new().max_attempts(Some(20)))?;
//! feed.subscribe(r#"{"op":"subscribe","channel":"ticker"}"#)?; // replayed after each reconnect
//! loop {
//!     match feed.next_event()? {
//!         Event::Message(message) => println!("{message:?}"),
//!         Event::Disconnected(why) => eprintln!("gap starts: {why}"),
//!         Event::AttemptFailed(f) => eprintln!("attempt {} failed: {}; next in {:?}", f.attempt, f.error, f.retry_in),
//!         Event::Reconnected(r) => eprintln!("back after {:?} ({} attempts)", r.downtime, r.attempts),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), wsc::Error>(())
//! ```
//!
//! What must be built afresh for each connection (a login signed with the current time, a
//! resume from the last sequence number seen) is not a subscription: send it when
//! [`Event::Reconnected`] comes, with [`Reconnecting::send`], and read its answer with
//! `next_event` as usual. Subscriptions are queued on the new connection before that event
//! (ahead of anything sent after it; what the socket does not take at once goes out with the
//! reads, under keepalive and the timeouts); keep them empty when they must wait for the
//! login.
//!
//! To stop a blocking feed from elsewhere (a Ctrl-C flag), give the builder a read timeout:
//! `next_event` then returns [`Error::Timeout`] with [`Phase::Read`] at least that often,
//! between connections too, and the loop can look at the flag and call
//! [`Reconnecting::close`]. The async client's `next_event` can simply be raced against a
//! signal in `tokio::select!`: it is cancellation safe.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::blocking::WebSocket;
use crate::client::ClientBuilder;
use crate::error::{Error, Phase};
use crate::proto::frame::MAX_CONTROL_PAYLOAD;
use crate::proto::handshake::HandshakeError;
use crate::proto::{CloseFrame, Message};
use crate::stream::MaybeTlsStream;

/// When to try again after a drop: exponential backoff with jitter, bounded in delay (a
/// server's `Retry-After` may ask for longer: [`Reconnect::max_retry_after`]) and,
/// optionally, in attempts.
#[derive(Debug, Clone)]
#[must_use]
pub struct Reconnect {
    initial_delay: Duration,
    max_delay: Duration,
    max_attempts: Option<u32>,
    jitter: bool,
    stable_after: Duration,
    retry_first: bool,
    max_retry_after: Option<Duration>,
    retry_if: fn(&Error) -> bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            jitter: true,
            stable_after: Duration::from_secs(10),
            retry_first: false,
            max_retry_after: Some(Duration::from_secs(3600)),
            retry_if: is_retryable,
        }
    }
}

impl Reconnect {
    /// The default policy: first retry after about 0.5 s, doubling up to 30 s (or as long as
    /// a refusal's `Retry-After` asks, up to an hour), forever.
    pub fn new() -> Self {
        Self::default()
    }

    /// The delay before the first attempt after a drop (default 500 ms). After a reconnect
    /// whose connection dropped before it was stable ([`Reconnect::stable_after`]), the
    /// backoff goes on from where it was instead.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest delay between attempts (default 30 s), but for a server's `Retry-After`
    /// ([`Reconnect::max_retry_after`]).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Gives up after this many failed attempts in a row (default `None`: never; `Some(0)`:
    /// the first drop is the end, with no attempt). A connection that drops before it is
    /// stable ([`Reconnect::stable_after`]) counts as a failed attempt: a server that accepts
    /// and then closes at once is not retried forever.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Randomizes each delay to between half and all of it (default on), so that many
    /// clients dropped at once do not come back at once.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// How long a connection must stay up to count as stable (default 10 s): a server that
    /// accepts and then drops the connection sooner keeps the backoff growing instead of
    /// being retried at the initial delay forever.
    pub fn stable_after(mut self, duration: Duration) -> Self {
        self.stable_after = duration;
        self
    }

    /// Retries the first connection too (default off: its failure is returned at once, as
    /// most often it is a mistake to mend, not a drop to wait out). On, a failure that a
    /// retry could mend ([`Reconnect::retry_if`]: refused, timed out, a 503) makes the connect
    /// return the client at once, not yet connected, as if the connection had dropped: the
    /// next events are the attempts' outcome, [`Event::Reconnected`] when one succeeds (its
    /// `attempts` count the first), or the last error when `max_attempts` (which counts the
    /// first attempt too) runs out. A service started before its server is up waits for it.
    pub fn retry_first_connect(mut self, on: bool) -> Self {
        self.retry_first = on;
        self
    }

    /// The longest wait a server's `Retry-After` can impose (default 1 hour; `None`: the
    /// field is ignored). A refusal that can be retried (429 Too Many Requests, 503 Service
    /// Unavailable, ...) with a `Retry-After` puts the next attempt off until then at the
    /// soonest, past the backoff's delay if need be: services that limit their rate ban the
    /// addresses of clients that come back sooner. A longer wait asked for is cut to this.
    /// With [`Reconnect::jitter`], up to a tenth of the wait (at most `max_delay`) is added.
    /// A blocking client without a read timeout sleeps through the wait: give it one to
    /// look at a stop flag meanwhile.
    pub fn max_retry_after(mut self, limit: Option<Duration>) -> Self {
        self.max_retry_after = limit;
        self
    }

    /// Which failed attempts are worth another (default [`is_retryable`]: network trouble,
    /// timeouts, 5xx, 408 and 429 refusals; not a 401, 403 or 404, a certificate refused or a
    /// handshake the server breaks). A failure it turns down ends reconnecting: its error is
    /// returned. A feed that must outlive a load balancer's 404 during a deploy, or a
    /// maintenance page, widens it:
    ///
    /// ```
    /// use wsc::reconnect::{is_retryable, Reconnect};
    /// use wsc::{Error, HandshakeError};
    /// // Also any refusal, but not a bad URL or TLS setup (which no retry mends).
    /// let policy = Reconnect::new().retry_if(|e| {
    ///     is_retryable(e) || matches!(e, Error::Handshake(HandshakeError::Rejected(_)))
    /// });
    /// ```
    pub fn retry_if(mut self, retryable: fn(&Error) -> bool) -> Self {
        self.retry_if = retryable;
        self
    }

    /// The delay before attempt `attempt` (1-based): the initial delay doubled per attempt,
    /// capped at the maximum, then jittered with `random`.
    pub fn delay(&self, attempt: u32, random: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let base = self
            .initial_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        if !self.jitter {
            return base;
        }
        let half = base / 2;
        half + share_of(half, random)
    }

    pub(crate) fn gives_up_after(&self, failed: u32) -> bool {
        self.max_attempts.is_some_and(|max| failed >= max)
    }
}

/// What a reconnecting client reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A message or control frame from the server (a close from the server is reported as
    /// [`Event::Disconnected`] instead).
    Message(Message),
    /// The connection dropped; reconnecting starts with the next call. Messages the server
    /// sends from now until [`Event::Reconnected`] are lost: this is the gap.
    Disconnected(Disconnect),
    /// An attempt to reconnect failed; the next one is made in `retry_in`. Reported for each
    /// failed attempt but the last: when reconnecting gives up, `next_event` returns that
    /// attempt's error instead.
    AttemptFailed(AttemptFailed),
    /// A new connection is open and the subscriptions were sent again.
    Reconnected(Reconnected),
}

/// Why the connection dropped.
#[derive(Debug)]
#[non_exhaustive]
pub enum Disconnect {
    /// The server closed the connection (with its close frame).
    Closed(Option<CloseFrame>),
    /// The connection failed: reset, I/O or TLS error, protocol violation, keepalive timeout.
    Failed(Error),
    /// We closed it to reconnect ([`Reconnecting::reconnect`]), with this close frame.
    Replaced(Option<CloseFrame>),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// `what`, then the close frame's code and reason in parentheses, if there is one.
        fn closed(
            f: &mut fmt::Formatter<'_>,
            what: &str,
            frame: &Option<CloseFrame>,
        ) -> fmt::Result {
            f.write_str(what)?;
            let Some(frame) = frame else {
                return Ok(());
            };
            write!(f, " ({}", frame.code)?;
            if !frame.reason.is_empty() {
                write!(f, " {:?}", &*frame.reason)?;
            }
            f.write_str(")")
        }
        match self {
            Disconnect::Closed(frame) => closed(f, "the server closed the connection", frame),
            Disconnect::Failed(e) => write!(f, "{e}"),
            Disconnect::Replaced(frame) => closed(f, "closed to reconnect", frame),
        }
    }
}

/// A successful reconnect: how long the connection was down and how many attempts it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnected {
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// From noticing the drop to the new connection being open.
    pub downtime: Duration,
}

/// A failed attempt to reconnect, and when the next one comes.
#[derive(Debug)]
#[non_exhaustive]
pub struct AttemptFailed {
    /// Why it failed (one that a retry could mend: [`Reconnect::retry_if`]).
    pub error: Error,
    /// Attempts failed since the connection dropped, this one included.
    pub attempt: u32,
    /// The wait before the next attempt: the backoff's delay, or the server's `Retry-After`
    /// (and, with jitter, up to a tenth more) when that is longer.
    pub retry_in: Duration,
    /// The wait the server asked for with `Retry-After` (cut to
    /// [`Reconnect::max_retry_after`]), if it asked.
    pub retry_after: Option<Duration>,
}

/// Whether another attempt could succeed where `error` failed: network trouble, server
/// errors, and TLS failures on the way (a garbled record, a server's internal-error alert)
/// yes; a bad URL (`ws://` for a TLS port too), the TLS setup or the certificate (or versions
/// and ciphers the server will not take), a refusal such as 401/403/404, or an answer that
/// breaks the WebSocket handshake (a wrong `Sec-WebSocket-Accept`, a subprotocol or extension
/// that was not offered) no: the same server answers the same way again.
pub fn is_retryable(error: &Error) -> bool {
    match error {
        Error::Dns { .. }
        | Error::Connect { .. }
        | Error::Timeout(_)
        | Error::Io(_)
        | Error::ConnectionReset
        | Error::ConnectionClosed
        | Error::KeepaliveTimeout(_)
        | Error::TlsClosed { .. }
        | Error::SendQueueFull { .. }
        | Error::Protocol(_) => true,
        Error::Handshake(HandshakeError::Rejected(response)) => {
            let status = response.status.as_u16();
            status >= 500 || status == 408 || status == 429
        }
        // Cut short (a restarting server, a proxy's hiccup), or not HTTP/1.1: an HTTP/1.0
        // 503 from a restarting backend or balancer is one (so is SSH's banner on the port,
        // which is retried for nothing until `max_attempts`, the lesser harm).
        Error::Handshake(HandshakeError::ConnectionClosed | HandshakeError::InvalidHttp(_)) => true,
        Error::Handshake(_) => false,
        Error::Proxy { error, .. } => error.is_retryable(),
        #[cfg(feature = "tls")]
        Error::Tls { source, .. } => tls_is_retryable(source),
        _ => false,
    }
}

/// Whether a TLS failure could pass: a record garbled or cut on the way, an overloaded or
/// restarting server's alert. Not the certificate, the versions or ciphers offered, or an
/// access refused: the same server answers them the same way again.
#[cfg(feature = "tls")]
fn tls_is_retryable(error: &rustls::Error) -> bool {
    use rustls::{AlertDescription as Alert, Error as Tls};
    match error {
        Tls::InvalidMessage(_)
        | Tls::InappropriateMessage { .. }
        | Tls::InappropriateHandshakeMessage { .. }
        | Tls::DecryptError
        | Tls::PeerSentOversizedRecord
        | Tls::FailedToGetRandomBytes => true,
        Tls::AlertReceived(alert) => matches!(
            alert,
            Alert::InternalError
                | Alert::CloseNotify
                | Alert::UserCanceled
                | Alert::UnexpectedMessage
                | Alert::DecodeError
                | Alert::DecryptError
                | Alert::BadRecordMac
                | Alert::RecordOverflow
        ),
        _ => false,
    }
}

/// The share `random` (of `u32::MAX`) of `span`: jitter.
fn share_of(span: Duration, random: u32) -> Duration {
    span.mul_f64(f64::from(random) / f64::from(u32::MAX))
}

/// A random number for jitter; without randomness the delay is simply not jittered.
pub(crate) fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u32::from_ne_bytes(bytes),
        Err(_) => u32::MAX,
    }
}

/// The bookkeeping both reconnecting clients share: the policy, the subscriptions to replay,
/// and the state of the current gap.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) builder: ClientBuilder,
    pub(crate) policy: Reconnect,
    pub(crate) subscriptions: Vec<Message>,
    /// When the current gap began.
    pub(crate) down_since: Option<Instant>,
    /// Failed attempts in the current gap.
    pub(crate) failed: u32,
    /// How far the backoff has gone: each failed attempt, and each reconnect whose
    /// connection dropped before it was stable, is a step; only a stable connection starts
    /// it over (a server that accepts and drops at once must not bring every client back at
    /// the initial delay, however long it refused before).
    pub(crate) backoff: u32,
    /// Failed attempts in a row, counting as failed the reconnects whose connection dropped
    /// before it was stable (not the first connection: no attempt made it); `max_attempts`
    /// bounds it. A stable connection starts it over.
    pub(crate) in_a_row: u32,
    /// The current connection was opened by a reconnect.
    pub(crate) reconnected_since: bool,
    /// When the current connection opened.
    pub(crate) up_since: Instant,
    /// A text or binary message arrived on the current connection: one replaced before any
    /// did counts as short-lived, however long it was up (a feed that never sends anything
    /// must not be replaced forever, `max_attempts` or not).
    pub(crate) heard: bool,
    /// The caller closed the connection, or reconnecting gave up: no more attempts.
    pub(crate) stopped: bool,
    /// Reconnecting gave up (after `max_attempts`, or on an error no retry can mend).
    pub(crate) gave_up: bool,
    /// The iterator or stream of events gave its last item.
    events_over: bool,
    /// When the next attempt is due, once the wait for it began: a wait cut short (by a read
    /// timeout, a read deadline, a cancelled future) goes on toward the same time.
    retry_at: Option<Instant>,
    /// An event to report before anything else: the failure of a first connection that is
    /// retried ([`Reconnect::retry_first_connect`]).
    pending: Option<Event>,
}

impl Plan {
    /// A plan for a connection opened at `now`. Every method that needs the time is given
    /// it, by the client's own clock: std's for the blocking client, tokio's for the async
    /// one (which a user's test may pause).
    pub(crate) fn new(builder: ClientBuilder, policy: Reconnect, now: Instant) -> Self {
        Plan {
            builder,
            policy,
            subscriptions: Vec::new(),
            down_since: None,
            failed: 0,
            backoff: 0,
            in_a_row: 0,
            reconnected_since: false,
            up_since: now,
            heard: false,
            stopped: false,
            gave_up: false,
            events_over: false,
            retry_at: None,
            pending: None,
        }
    }

    /// A plan whose first connection failed with `error` at `now`: down from the start, the
    /// failure counted as an attempt. The error back when no retry is to be made (the policy
    /// does not retry first connections, the error is not one to retry, or `max_attempts`
    /// is spent already).
    pub(crate) fn first_failed(
        builder: ClientBuilder,
        policy: Reconnect,
        error: Error,
        now: Instant,
    ) -> Result<Self, Error> {
        if !policy.retry_first {
            return Err(error);
        }
        let mut plan = Plan::new(builder, policy, now);
        plan.down_since = Some(now);
        plan.pending = Some(plan.attempt_failed(error, now)?);
        Ok(plan)
    }

    /// Records a drop at `now` and turns it into its event.
    pub(crate) fn dropped(&mut self, cause: Disconnect, now: Instant) -> Event {
        let short = now.duration_since(self.up_since) < self.policy.stable_after
            || (matches!(cause, Disconnect::Replaced(_)) && !self.heard);
        if short && self.reconnected_since {
            // The first connection's short life is no attempt of ours: no backoff for it.
            self.backoff = self.backoff.saturating_add(1);
        } else if !short {
            self.backoff = 0;
            self.in_a_row = 0;
        }
        self.down_since = Some(now);
        self.failed = 0;
        self.retry_at = None;
        if short && self.reconnected_since {
            self.in_a_row = self.in_a_row.saturating_add(1);
        }
        // (`max_attempts(Some(0))`: no attempt at all.)
        if self.policy.gives_up_after(self.in_a_row) {
            self.stopped = true;
            self.gave_up = true;
        }
        Event::Disconnected(cause)
    }

    /// The delay before the next attempt: the first after a stable connection comes after
    /// the initial delay, later ones (and those after short-lived connections) back off.
    fn next_delay(&self) -> Duration {
        self.policy
            .delay(self.backoff.saturating_add(1), random_u32())
    }

    /// When the next attempt is due: the backoff delay from the first look, and the same
    /// time at every look after it until the attempt is made.
    pub(crate) fn retry_at(&mut self, now: Instant) -> Instant {
        if self.down_since.is_none() {
            self.down_since = Some(now);
        }
        if let Some(at) = self.retry_at {
            return at;
        }
        let at = later(now, self.next_delay());
        self.retry_at = Some(at);
        at
    }

    /// Records an attempt that failed at `now` and plans the next one: its event, or `Err`
    /// (the error to return) when it is time to give up.
    pub(crate) fn attempt_failed(&mut self, error: Error, now: Instant) -> Result<Event, Error> {
        self.failed = self.failed.saturating_add(1);
        self.backoff = self.backoff.saturating_add(1);
        self.in_a_row = self.in_a_row.saturating_add(1);
        if !(self.policy.retry_if)(&error) || self.policy.gives_up_after(self.in_a_row) {
            self.retry_at = None;
            self.stopped = true;
            self.gave_up = true;
            return Err(error);
        }
        let retry_after = match (&error, self.policy.max_retry_after) {
            (Error::Handshake(HandshakeError::Rejected(response)), Some(limit)) => response
                .retry_after(SystemTime::now())
                .map(|wait| wait.min(limit)),
            _ => None,
        };
        let backoff = self.next_delay();
        let wait = match retry_after {
            Some(asked) => {
                // With jitter, a share of a tenth of it (up to `max_delay`) on top: clients
                // the server refused at the same moment do not all come back at once.
                let spread = match self.policy.jitter {
                    true => share_of((asked / 10).min(self.policy.max_delay), random_u32()),
                    false => Duration::ZERO,
                };
                asked.saturating_add(spread).max(backoff)
            }
            None => backoff,
        };
        let at = later(now, wait);
        self.retry_at = Some(at);
        let retry_in = at.saturating_duration_since(now);
        Ok(Event::AttemptFailed(AttemptFailed {
            error,
            attempt: self.failed,
            retry_in,
            retry_after,
        }))
    }

    /// Adds a message to the subscriptions, if it can be one: a close would end every
    /// connection it is replayed on, and a control frame over 125 bytes would fail every
    /// reconnect (for good: an invalid message is no error a retry mends).
    pub(crate) fn subscribe(&mut self, message: &Message) -> Result<(), Error> {
        match message {
            Message::Close(_) => {
                return Err(Error::InvalidInput(
                    "a close frame cannot be a subscription (end the connection with `close`)",
                ))
            }
            Message::Ping(data) | Message::Pong(data) if data.len() > MAX_CONTROL_PAYLOAD => {
                return Err(Error::InvalidInput(
                    "ping and pong payloads are at most 125 bytes",
                ))
            }
            _ => {}
        }
        self.subscriptions.push(message.clone());
        Ok(())
    }

    /// What `next_event` returns between connections before it waits for the next attempt,
    /// if anything: [`Error::GaveUp`] or [`Error::ConnectionClosed`] once stopped, else the
    /// event pending.
    pub(crate) fn before_attempt(&mut self) -> Option<Result<Event, Error>> {
        if self.stopped {
            return Some(Err(self.unconnected()));
        }
        self.pending.take().map(Ok)
    }

    /// For the iterator and the stream of events, with no connection open: `None` while
    /// there are events to come (call `next_event`); once stopped, `Some` of the last item,
    /// [`Error::GaveUp`] once when reconnecting gave up (none after the caller's close).
    pub(crate) fn last_item(&mut self) -> Option<Option<Result<Event, Error>>> {
        if !self.stopped {
            return None;
        }
        let item = (self.gave_up && !self.events_over).then(|| Err(self.unconnected()));
        self.events_over = true;
        Some(item)
    }

    /// Whether the iterator or stream of events is over (with no connection open): the
    /// caller closed it, or the last item after giving up was given (for `FusedStream`).
    #[cfg(feature = "tokio")]
    pub(crate) fn events_over(&self) -> bool {
        self.stopped && (self.events_over || !self.gave_up)
    }

    /// The error of a send with no connection open: [`Error::GaveUp`] once reconnecting gave
    /// up, [`Error::ConnectionClosed`] once the caller stopped it, [`Error::NotConnected`]
    /// between connections.
    pub(crate) fn unconnected(&self) -> Error {
        match (self.gave_up, self.stopped) {
            (true, _) => Error::GaveUp {
                attempts: self.in_a_row,
            },
            (false, true) => Error::ConnectionClosed,
            (false, false) => Error::NotConnected,
        }
    }

    /// Records the attempt that succeeded at `now` and turns it into its event.
    pub(crate) fn reconnected(&mut self, now: Instant) -> Event {
        self.retry_at = None;
        let event = Event::Reconnected(Reconnected {
            attempts: self.failed.saturating_add(1),
            downtime: self
                .down_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
        });
        self.down_since = None;
        self.failed = 0;
        self.up_since = now;
        self.heard = false;
        self.reconnected_since = true;
        event
    }
}

/// `now + delay`; for a delay past what the clock can count to (a huge `max_delay`), a year
/// will do.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Whether a read error ends the connection. A read timeout does not, nor a write timeout:
/// what was not written stays queued (a keepalive ping behind a big upload, say), nor a send
/// refused for a full queue; a dead peer is what keepalive is for.
pub(crate) fn ends_connection(error: &Error) -> bool {
    !matches!(
        error,
        Error::Timeout(Phase::Read | Phase::Write) | Error::SendQueueFull { .. }
    )
}

/// A blocking client that reconnects after a drop (see the [module docs](self)).
#[derive(Debug)]
pub struct Reconnecting {
    plan: Plan,
    ws: Option<WebSocket<MaybeTlsStream>>,
    /// See [`Reconnecting::set_read_deadline`].
    read_deadline: Option<Instant>,
}

impl ClientBuilder {
    /// Connects, and reconnects by `policy` whenever the connection drops. The first
    /// connection is not retried, its failure (a wrong URL, a refusal) returned at once,
    /// unless the policy says so ([`Reconnect::retry_first_connect`]).
    pub fn connect_reconnecting(self, policy: Reconnect) -> Result<Reconnecting, Error> {
        let (plan, ws) = match self.clone().connect() {
            Ok(ws) => (Plan::new(self, policy, Instant::now()), Some(ws)),
            Err(e) => (Plan::first_failed(self, policy, e, Instant::now())?, None),
        };
        Ok(Reconnecting {
            plan,
            ws,
            read_deadline: None,
        })
    }
}

/// The events of [`Reconnecting::next_event`] as an iterator (`for event in feed`), as the
/// async client's are a `Stream`: its items are those of `next_event`, errors included (a
/// read timeout is one, and the iterator goes on after it). Once reconnecting gives up, the
/// last item is [`Error::GaveUp`]; once [`Reconnecting::close`] stopped it, it simply ends.
impl Iterator for Reconnecting {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ws.is_none() {
            if let Some(last) = self.plan.last_item() {
                return last;
            }
        }
        Some(self.next_event())
    }
}

impl Reconnecting {
    /// The next message, or a drop or reconnect. Returns an error when reconnecting gives
    /// up (the last attempt's error), after [`Reconnecting::close`]
    /// ([`Error::ConnectionClosed`]), and for a read or write timeout (the connection stays
    /// up; what was not written stays queued). When connections keep dropping before they
    /// are stable, the drop that reaches `max_attempts` is the last event
    /// ([`Reconnecting::has_given_up`]); [`Error::GaveUp`] follows, at every call.
    ///
    /// Between connections the read timeout (the builder's) and the read deadline bound the
    /// wait for the next attempt as they bound a read: [`Error::Timeout`] with
    /// [`Phase::Read`], and the next call waits on for the same attempt (so a loop that
    /// wakes each second to look at a stop flag still reconnects on time). An attempt, once
    /// begun, is bounded by the connect and handshake timeouts.
    pub fn next_event(&mut self) -> Result<Event, Error> {
        if let Some(ws) = &mut self.ws {
            return match ws.read() {
                Ok(Message::Close(frame)) => {
                    // The server closes TCP first (RFC 6455 section 7.1.1): the next read
                    // waits for that, within the close timeout, as the async client does.
                    let _ = ws.read();
                    self.ws = None;
                    Ok(self.plan.dropped(Disconnect::Closed(frame), Instant::now()))
                }
                Ok(message) => {
                    self.plan.heard |= message.is_data();
                    Ok(Event::Message(message))
                }
                Err(e) if !ends_connection(&e) => Err(e),
                Err(e) => {
                    self.ws = None;
                    Ok(self.plan.dropped(Disconnect::Failed(e), Instant::now()))
                }
            };
        }
        if let Some(answer) = self.plan.before_attempt() {
            return answer;
        }
        let now = Instant::now();
        let due = self.plan.retry_at(now);
        if now < due {
            let timeout = self
                .plan
                .builder
                .read_timeout
                .and_then(|t| now.checked_add(t));
            let until = [Some(due), timeout, self.read_deadline]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(due);
            std::thread::sleep(until.saturating_duration_since(now));
            if until < due {
                return Err(Error::Timeout(Phase::Read));
            }
        }
        match self.open() {
            Ok(ws) => {
                self.ws = Some(ws);
                Ok(self.plan.reconnected(Instant::now()))
            }
            Err(e) => self.plan.attempt_failed(e, Instant::now()),
        }
    }

    /// Makes [`Reconnecting::next_event`] return [`Error::Timeout`] ([`Phase::Read`]) once
    /// `deadline` has passed, on this connection and the ones after it (see
    /// [`WebSocket::set_read_deadline`]) and between them; `None` lifts it.
    pub fn set_read_deadline(&mut self, deadline: Option<Instant>) {
        self.read_deadline = deadline;
        if let Some(ws) = &mut self.ws {
            ws.set_read_deadline(deadline);
        }
    }

    /// Whether reconnecting gave up: `max_attempts` reached (failed attempts and connections
    /// that dropped before they were stable, in a row), or an error no retry can mend.
    pub fn has_given_up(&self) -> bool {
        self.plan.gave_up
    }

    /// Opens a connection and sends the subscriptions. All of them are queued, however
    /// slowly the server takes them (they are the caller's own list); what the socket does
    /// not take at once goes out with the reads, under their bounds (the write timeout,
    /// keepalive), so that a server that takes none of it neither fails the attempt nor
    /// holds it.
    fn open(&self) -> Result<WebSocket<MaybeTlsStream>, Error> {
        let mut ws = self.plan.builder.clone().connect()?;
        ws.set_read_deadline(self.read_deadline);
        for message in &self.plan.subscriptions {
            ws.queue(message.clone())?;
        }
        ws.flush_nowait()?;
        Ok(ws)
    }

    /// Sends a message on the current connection: [`Error::NotConnected`] between
    /// connections (it is not queued: what made sense before a gap may not after it),
    /// [`Error::ConnectionClosed`] after [`Reconnecting::close`], [`Error::GaveUp`] after
    /// giving up.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        match &mut self.ws {
            Some(ws) => ws.send(message),
            None => Err(self.plan.unconnected()),
        }
    }

    /// Sends a message now (if connected) and again after every reconnect, in the order
    /// subscribed. It is queued even behind output the server has not taken yet (never
    /// [`Error::SendQueueFull`]: it is in the list already); [`Error::Timeout`] with
    /// [`Phase::Write`] means it waits in the queue, as for [`WebSocket::send`]. Once it is
    /// in the list, a connection found dead while sending it is no error of `subscribe`:
    /// [`Reconnecting::next_event`] reports the drop, and the message goes out after the
    /// reconnect (subscribing it again would send it twice). A close frame, or a ping or
    /// pong over 125 bytes, is refused ([`Error::InvalidInput`]) and not added.
    pub fn subscribe(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        self.plan.subscribe(&message)?;
        let Some(ws) = &mut self.ws else {
            return Ok(());
        };
        match ws.queue(message).and_then(|()| ws.flush()) {
            Err(e @ Error::Timeout(Phase::Write)) => Err(e),
            // The connection is gone: the next read reports it.
            Err(_) | Ok(()) => Ok(()),
        }
    }

    /// The builder the next attempts connect with: to change the URL or headers between
    /// connections (a token that is good for one connection only, a login header signed
    /// with the time), when [`Event::Disconnected`] or [`Event::AttemptFailed`] comes.
    ///
    /// ```no_run
    /// use wsc::reconnect::{Event, Reconnect};
    /// # fn fresh_token() -> String { String::new() }
    /// let url = |token: String| format!("wss://stream.example.com/ws?token={token}");
    /// let mut feed = wsc::ClientBuilder::new(url(fresh_token()))
    ///     .connect_reconnecting(Reconnect::new())?;
    /// loop {
    ///     match feed.next_event()? {
    ///         Event::Disconnected(_) | Event::AttemptFailed(_) => {
    ///             *feed.builder_mut() = wsc::ClientBuilder::new(url(fresh_token()));
    ///         }
    ///         Event::Message(m) => println!("{m:?}"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok::<(), wsc::Error>(())
    /// ```
    pub fn builder_mut(&mut self) -> &mut ClientBuilder {
        &mut self.plan.builder
    }

    /// The messages replayed after each reconnect.
    pub fn subscriptions(&self) -> &[Message] {
        &self.plan.subscriptions
    }

    /// The messages replayed after each reconnect, to change: remove one you unsubscribed
    /// from, replace one whose parameters changed. Nothing is sent now.
    pub fn subscriptions_mut(&mut self) -> &mut Vec<Message> {
        &mut self.plan.subscriptions
    }

    /// Closes the open connection with `frame` and reconnects by the policy, as after a drop:
    /// for a connection that is up but no longer of use, such as a feed gone silent (no
    /// message for longer than the feed ever pauses: the server's side of it is stuck). The
    /// server's answer is waited for within the close timeout (with none set, for as long as
    /// the server takes). Returns the drop's [`Event::Disconnected`]
    /// ([`Disconnect::Replaced`]), its gap counted from the call; the next
    /// [`Reconnecting::next_event`] opens the new connection after the policy's delay (the
    /// initial delay after a stable connection). A connection replaced sooner than
    /// `stable_after`, or before any text or binary message came on it, counts toward
    /// `max_attempts` as a short-lived one would: a feed that never sends anything is not
    /// replaced forever. `Ok(None)` when no connection is open (between connections, or after
    /// [`Reconnecting::close`]); [`Error::InvalidInput`] for a frame that cannot be sent (a
    /// reserved code, a reason over 123 bytes), the connection kept.
    ///
    /// ```no_run
    /// use std::time::{Duration, Instant};
    /// use wsc::reconnect::{Event, Reconnect};
    /// use wsc::{CloseCode, CloseFrame, Error, Phase};
    ///
    /// const SILENCE: Duration = Duration::from_secs(30);
    /// let mut feed = wsc::ClientBuilder::new("wss://stream.example.com/ws")
    ///     .read_timeout(Some(Duration::from_secs(1)))
    ///     .connect_reconnecting(Reconnect::new())?;
    /// let mut last = Instant::now();
    /// loop {
    ///     match feed.next_event() {
    ///         Ok(Event::Message(m)) if m.is_data() => last = Instant::now(),
    ///         Ok(Event::Reconnected(_)) => last = Instant::now(),
    ///         Ok(_) => {}
    ///         Err(Error::Timeout(Phase::Read)) if last.elapsed() > SILENCE => {
    ///             let idle = CloseFrame::new(CloseCode::GOING_AWAY, "no data");
    ///             feed.reconnect(Some(idle))?;
    ///         }
    ///         Err(Error::Timeout(Phase::Read)) => {}
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok::<(), wsc::Error>(())
    /// ```
    pub fn reconnect(&mut self, frame: Option<CloseFrame>) -> Result<Option<Event>, Error> {
        let Some(ws) = &mut self.ws else {
            return Ok(None);
        };
        // A frame that cannot be sent (a reserved code, a reason over 123 bytes) leaves the
        // connection as it is: closing without it would be a drop, not a close.
        if let Some(frame) = &frame {
            frame.check_sendable()?;
        }
        // The gap starts now, as on the async client (whose wait may be cancelled).
        let event = self
            .plan
            .dropped(Disconnect::Replaced(frame.clone()), Instant::now());
        // Bounded by the close timeout (not by a read deadline the caller set). Whatever the
        // server answers, or if it answers nothing, this connection is over.
        let _ = ws.close_and_wait(frame);
        self.ws = None;
        Ok(Some(event))
    }

    /// Closes the connection and stops reconnecting; returns the server's close frame.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<Option<CloseFrame>, Error> {
        self.plan.stopped = true;
        match self.ws.take() {
            Some(mut ws) => ws.close_and_wait(frame),
            None => Ok(None),
        }
    }

    /// The current connection, if one is open.
    pub fn get_ref(&self) -> Option<&WebSocket<MaybeTlsStream>> {
        self.ws.as_ref()
    }

    /// The current connection, mutably, if one is open.
    pub fn get_mut(&mut self) -> Option<&mut WebSocket<MaybeTlsStream>> {
        self.ws.as_mut()
    }

    /// Stops reconnecting and hands over the current connection, if one is open (to close
    /// it and read until its end as a plain [`WebSocket`]); `next_event` then returns
    /// [`Error::ConnectionClosed`].
    pub fn take(&mut self) -> Option<WebSocket<MaybeTlsStream>> {
        self.plan.stopped = true;
        self.ws.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_jitters_within_half() {
        let policy = Reconnect::new()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1))
            .jitter(false);
        let delays: Vec<u128> = (1..=6).map(|n| policy.delay(n, 0).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.delay(u32::MAX, 0), Duration::from_secs(1));
        let jittered = policy.jitter(true);
        assert_eq!(jittered.delay(3, 0), Duration::from_millis(200));
        assert_eq!(jittered.delay(3, u32::MAX), Duration::from_millis(400));
        let mid = jittered.delay(3, u32::MAX / 2);
        assert!(mid > Duration::from_millis(290) && mid < Duration::from_millis(310));
    }

    /// A plan for a connection opened now.
    fn new_plan(policy: Reconnect) -> Plan {
        Plan::new(
            ClientBuilder::new("ws://127.0.0.1:1/"),
            policy,
            Instant::now(),
        )
    }

    #[test]
    fn attempts_are_bounded_and_permanent_errors_stop_at_once() {
        let mut plan = new_plan(Reconnect::new().max_attempts(Some(2)));
        assert!(plan
            .attempt_failed(Error::ConnectionReset, Instant::now())
            .is_ok());
        assert!(plan
            .attempt_failed(Error::ConnectionReset, Instant::now())
            .is_err());
        assert!(plan.stopped);

        let mut plan = new_plan(Reconnect::new());
        let permanent = Error::Url(crate::url::UrlError::MissingHost);
        assert!(plan.attempt_failed(permanent, Instant::now()).is_err());
        assert!(plan.stopped);
    }

    #[test]
    fn short_lived_connections_keep_the_backoff_growing() {
        let policy = Reconnect::new()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(10))
            .jitter(false);
        let mut plan = new_plan(policy.clone());
        // The first connection dropping early is no attempt of ours: the initial delay.
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert_eq!(plan.next_delay(), Duration::from_millis(100));
        plan.reconnected(Instant::now());
        for expected in [200, 400, 800] {
            plan.dropped(Disconnect::Closed(None), Instant::now());
            assert_eq!(plan.next_delay(), Duration::from_millis(expected));
            plan.reconnected(Instant::now());
        }
        // A connection that stayed up past `stable_after` starts the backoff over.
        plan.up_since = Instant::now() - Duration::from_secs(11);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert_eq!(plan.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_reconnect_that_drops_early_goes_on_from_the_backoff_of_the_failed_attempts() {
        // A server that refused for a while, then accepts and drops at once: the next
        // attempt waits longer than the last, it does not start over at the initial delay.
        let policy = Reconnect::new()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(60))
            .jitter(false);
        let mut plan = new_plan(policy);
        plan.up_since = Instant::now() - Duration::from_secs(60);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        for expected in [100, 200, 400, 800, 1600, 3200] {
            assert_eq!(plan.next_delay(), Duration::from_millis(expected));
            assert!(plan
                .attempt_failed(Error::Timeout(Phase::Connect), Instant::now())
                .is_ok());
        }
        assert_eq!(plan.next_delay(), Duration::from_millis(6400));
        plan.reconnected(Instant::now());
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert_eq!(plan.next_delay(), Duration::from_millis(12800));
        // Once a connection stays up, the backoff starts over.
        plan.reconnected(Instant::now());
        plan.up_since = Instant::now() - Duration::from_secs(60);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert_eq!(plan.next_delay(), Duration::from_millis(100));
    }

    /// A refusal with `status` and, if given, a `Retry-After` of `retry_after`.
    fn refusal(status: u16, retry_after: Option<&'static str>) -> Error {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(http::header::RETRY_AFTER, value.parse().unwrap());
        }
        Error::Handshake(HandshakeError::Rejected(Box::new(crate::Response {
            status: http::StatusCode::from_u16(status).unwrap(),
            headers,
            protocol: None,
            body: bytes::Bytes::new(),
            #[cfg(feature = "deflate")]
            deflate: None,
            redirects: Vec::new(),
            request_head: None,
        })))
    }

    /// The wait planned after `error` failed an attempt, and the `Retry-After` it honoured.
    fn wait_after(plan: &mut Plan, error: Error) -> (Duration, Option<Duration>) {
        let now = Instant::now();
        match plan.attempt_failed(error, now) {
            Ok(Event::AttemptFailed(f)) => {
                assert_eq!(plan.retry_at(now), now + f.retry_in, "{f:?}");
                (f.retry_in, f.retry_after)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_retry_after_puts_the_next_attempt_off_past_the_backoff_up_to_the_limit() {
        let policy = Reconnect::new()
            .initial_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(4))
            .jitter(false);
        let secs = Duration::from_secs;
        let mut plan = new_plan(policy.clone());
        plan.dropped(Disconnect::Closed(None), Instant::now());
        // Longer than the backoff: honoured. Shorter: the backoff's delay stands.
        assert_eq!(
            wait_after(&mut plan, refusal(429, Some("120"))),
            (secs(120), Some(secs(120)))
        );
        assert_eq!(
            wait_after(&mut plan, refusal(503, Some("1"))),
            (secs(4), Some(secs(1)))
        );
        // No Retry-After, or another error: the backoff alone.
        assert_eq!(wait_after(&mut plan, refusal(503, None)), (secs(4), None));
        assert_eq!(
            wait_after(&mut plan, Error::ConnectionReset),
            (secs(4), None)
        );
        // Cut to the limit, or ignored.
        let mut plan = new_plan(policy.clone().max_retry_after(Some(secs(60))));
        let asked = refusal(503, Some("86400"));
        assert_eq!(wait_after(&mut plan, asked), (secs(60), Some(secs(60))));
        let mut plan = new_plan(policy.max_retry_after(None));
        assert_eq!(
            wait_after(&mut plan, refusal(429, Some("120"))),
            (secs(2), None)
        );
        // Jittered: up to a tenth more, so that refused clients spread out.
        let mut plan = new_plan(Reconnect::new().initial_delay(Duration::from_millis(10)));
        for _ in 0..20 {
            let (wait, asked) = wait_after(&mut plan, refusal(429, Some("100")));
            assert_eq!(asked, Some(secs(100)));
            assert!(wait >= secs(100) && wait <= secs(110), "{wait:?}");
        }
        // No limit and a wait past what the clock counts: a year, said as it is.
        let mut plan = new_plan(Reconnect::new().max_retry_after(Some(Duration::MAX)));
        let (wait, _) = wait_after(&mut plan, refusal(503, Some("99999999999999999999")));
        assert!(wait <= secs(366 * 24 * 3600), "{wait:?}");
        // A refusal no retry mends is the end, Retry-After or not.
        let mut plan = new_plan(Reconnect::new());
        assert!(plan
            .attempt_failed(refusal(403, Some("5")), Instant::now())
            .is_err());
    }

    #[test]
    fn a_message_that_cannot_be_a_subscription_is_refused_and_not_added() {
        // Added, it failed every reconnect after (for good: InvalidInput is no error a retry
        // mends), or closed each new connection at once.
        let mut plan = new_plan(Reconnect::new());
        for message in [
            Message::Close(None),
            Message::Ping(vec![0; 126].into()),
            Message::Pong(vec![0; 126].into()),
        ] {
            let refused = plan.subscribe(&message);
            assert!(
                matches!(refused, Err(Error::InvalidInput(_))),
                "{refused:?}"
            );
        }
        assert!(plan.subscriptions.is_empty());
        for message in [Message::text("sub"), Message::Ping(vec![0; 125].into())] {
            plan.subscribe(&message).unwrap();
        }
        assert_eq!(plan.subscriptions.len(), 2);
    }

    #[test]
    fn max_attempts_of_zero_gives_up_at_the_first_drop() {
        // It made one attempt, as Some(1) does.
        let policy = Reconnect::new().max_attempts(Some(0));
        let mut plan = new_plan(policy);
        plan.up_since = Instant::now() - Duration::from_secs(60);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert!(plan.stopped && plan.gave_up);
        // Some(1) still makes its one attempt.
        let policy = Reconnect::new().max_attempts(Some(1));
        let mut plan = new_plan(policy);
        plan.up_since = Instant::now() - Duration::from_secs(60);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert!(!plan.stopped);
        assert!(plan
            .attempt_failed(Error::Timeout(Phase::Connect), Instant::now())
            .is_err());
        assert!(plan.gave_up);
    }

    #[test]
    fn reconnections_that_keep_dropping_at_once_count_toward_giving_up() {
        // Three reconnects, each dropped at once: the third is the last. The first
        // connection's short life is no attempt of ours and does not count.
        let policy = Reconnect::new().max_attempts(Some(3));
        let mut plan = new_plan(policy);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        for _ in 0..2 {
            plan.reconnected(Instant::now());
            plan.dropped(Disconnect::Closed(None), Instant::now());
            assert!(!plan.stopped);
        }
        plan.reconnected(Instant::now());
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert!(plan.stopped && plan.gave_up);
        // Short-lived reconnects and failed attempts add up.
        let policy = Reconnect::new().max_attempts(Some(3));
        let mut plan = new_plan(policy);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert!(plan
            .attempt_failed(Error::Timeout(Phase::Connect), Instant::now())
            .is_ok());
        plan.reconnected(Instant::now());
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert!(plan
            .attempt_failed(Error::Timeout(Phase::Connect), Instant::now())
            .is_err());
        assert!(plan.gave_up);
        // A stable connection starts the count over.
        let policy = Reconnect::new().max_attempts(Some(1));
        let mut plan = new_plan(policy);
        plan.reconnected(Instant::now());
        plan.up_since = Instant::now() - Duration::from_secs(11);
        plan.dropped(Disconnect::Closed(None), Instant::now());
        assert!(!plan.stopped);
    }

    #[test]
    fn timeouts_do_not_end_a_connection_other_errors_do() {
        assert!(!ends_connection(&Error::Timeout(Phase::Read)));
        // A keepalive ping or queued output behind a big upload: still queued, not lost.
        assert!(!ends_connection(&Error::Timeout(Phase::Write)));
        assert!(ends_connection(&Error::ConnectionReset));
        assert!(ends_connection(&Error::KeepaliveTimeout(
            Duration::from_secs(1)
        )));
    }

    #[test]
    fn retryable_errors() {
        assert!(is_retryable(&Error::Timeout(Phase::Connect)));
        assert!(is_retryable(&Error::KeepaliveTimeout(Duration::from_secs(
            1
        ))));
        assert!(!is_retryable(&Error::TlsConfig("bad".into())));
        assert!(!is_retryable(&Error::InvalidInput("x")));
        assert!(is_retryable(&Error::Handshake(
            HandshakeError::ConnectionClosed
        )));
        assert!(is_retryable(&Error::Handshake(
            HandshakeError::InvalidHttp(
                "the response is not HTTP/1.1: HTTP/1.0 503 Service Unavailable".into()
            )
        )));
        for permanent in [
            HandshakeError::WrongAccept {
                found: "x".into(),
                expected: "y".into(),
            },
            HandshakeError::UnexpectedProtocol("chat".into()),
            HandshakeError::UnexpectedExtension("x-foo".into()),
            HandshakeError::InvalidRequestHeader("bad".into()),
            HandshakeError::TooLarge { max: 1 },
            HandshakeError::TooManyHeaders { max: 100 },
            HandshakeError::TlsAnswer,
        ] {
            assert!(!is_retryable(&Error::Handshake(permanent)));
        }
    }

    #[test]
    #[cfg(feature = "tls")]
    fn tls_failures_on_the_way_are_retried_and_certificate_ones_are_not() {
        use rustls::{AlertDescription, CertificateError, Error as Tls, InvalidMessage};
        let tls = |source| Error::Tls {
            host: "h".into(),
            source,
        };
        for passing in [
            Tls::AlertReceived(AlertDescription::InternalError),
            Tls::InvalidMessage(InvalidMessage::InvalidContentType),
            Tls::DecryptError,
        ] {
            assert!(is_retryable(&tls(passing.clone())), "{passing:?}");
        }
        for lasting in [
            Tls::InvalidCertificate(CertificateError::Expired),
            Tls::InvalidCertificate(CertificateError::UnknownIssuer),
            Tls::AlertReceived(AlertDescription::HandshakeFailure),
            Tls::AlertReceived(AlertDescription::ProtocolVersion),
            Tls::AlertReceived(AlertDescription::CertificateRequired),
            Tls::NoCertificatesPresented,
        ] {
            assert!(!is_retryable(&tls(lasting.clone())), "{lasting:?}");
        }
    }
}
