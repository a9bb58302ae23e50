//! The async driver on tokio: the same sans-I/O core as the blocking client, driven by any
//! `AsyncRead + AsyncWrite` stream (feature `tokio`).
//!
//! [`WebSocketStream`] is a [`futures_core::Stream`] of messages and a [`futures_sink::Sink`]
//! for sending, with `recv`/`send`/`close` methods on top. All of its state lives in the
//! struct, never in a future: a `recv()` (or `recv_ref`, `next`) dropped by `select!` loses
//! no message, and a `close` (or the sink's flush) called again goes on where the dropped
//! call was.
//!
//! A `send()` (and `send_text`, `send_binary`, `ping`, `send_fragmented`, `send_part`)
//! dropped before it returns may or may not have queued its message: dropped while it waited
//! for room in the write buffer (the peer reading slowly), it queued nothing; dropped after,
//! the message goes out with the next write. Sending it again may then send it twice, and
//! not sending it may lose it. To send from a `select!` loop, queue with
//! `futures_util::SinkExt::feed`, which waits for room and queues in the same step (a `feed`
//! dropped queued nothing; one that returned queued its message), then write with
//! `SinkExt::flush`; or send from a task of its own ([`WebSocketStream::split`]).
//! The parts of a `send_part` message must not be dropped half-way: a part left out or sent
//! twice changes the message.
//!
//! [`WebSocketStream::split`] gives a reading and a writing half for two tasks. Pongs and
//! close replies are written by whichever half is polled, so a task that only reads still
//! answers pings.
//!
//! ```no_run
//! # async fn run() -> Result<(), wsc::Error> {
//! let (mut ws, _response) = wsc::tokio::connect("wss://stream.example.com/ws").await?;
//! ws.send_text(r#"{"op":"subscribe","channel":"ticker"}"#).await?;
//! while let Some(message) = ws.recv().await {
//!     println!("{:?}", message?);
//! }
//! # Ok(()) }
//! ```

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use ::tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use ::tokio::time::{sleep, sleep_until, timeout_at, Sleep};
use bytes::BufMut;
use futures_core::Stream;
use futures_sink::Sink;

use crate::client::ClientBuilder;
use crate::error::{Error, Phase};
use crate::proto::connection::ReadTarget;
use crate::proto::handshake::Response;
use crate::proto::{
    CloseFrame, Connection, Keepalive, Message, MessagePart, MessageRef, Role, State,
};
use crate::server::Acceptor;
use crate::stream::{is_peer_gone, is_timeout, map_io_error};

// This module drives a connection; `open` connects and accepts, `split` holds the two halves,
// `stream` is the TCP or TLS stream a client connects over.
mod open;
mod split;
mod stream;

pub use crate::reconnect_tokio::Reconnecting;
pub use split::{WsReader, WsWriter};
pub use stream::TokioStream;

/// A waker for a poll whose readiness nobody waits for (`Waker::noop` needs Rust 1.85).
struct NoWake;

impl std::task::Wake for NoWake {
    fn wake(self: std::sync::Arc<Self>) {}
}

/// Read this much at a time.
const READ_CHUNK: usize = 16 << 10;

/// Default bound on queued outgoing bytes before `Sink::poll_ready` waits for the socket.
const DEFAULT_WRITE_BUFFER: usize = 128 << 10;

/// Most bytes discarded while waiting for the server to close TCP after the close handshake.
const CLOSE_DRAIN_LIMIT: usize = 1 << 20;

/// How long an idle connection keeps the buffer of its last big (or compressed) message: long
/// enough that a stream of big messages reuses it rather than allocating, faulting in and
/// zeroing it again for each one; short enough that an idle connection soon holds none.
const KEEP_MESSAGE_BUFFER: Duration = Duration::from_secs(1);

/// Connects to a `ws://` or `wss://` URL with default options.
pub async fn connect(
    url: impl AsRef<str>,
) -> Result<(WebSocketStream<TokioStream>, Response), Error> {
    ClientBuilder::new(url.as_ref()).connect_async().await
}

/// Runs the client handshake over a stream you opened yourself.
pub async fn client<S>(
    url: impl AsRef<str>,
    stream: S,
) -> Result<(WebSocketStream<S>, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ClientBuilder::new(url.as_ref())
        .connect_async_on(stream)
        .await
}

/// Accepts a WebSocket upgrade on `stream` with default options (server role).
pub async fn accept<S>(stream: S) -> Result<WebSocketStream<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Acceptor::new().accept_async(stream).await.map(|(ws, _)| ws)
}

/// The connection state both halves share: the stream and the protocol core.
struct Inner<S> {
    stream: S,
    conn: Connection,
    write_buffer: usize,
    close_timeout: Option<Duration>,
    /// The reader's close timer: flushing the close reply and letting the server close TCP.
    close_wait: Option<Pin<Box<Sleep>>>,
    /// The writer's: sending our close frame (`Sink::close`, the writing half's `close`).
    close_send_wait: Option<Pin<Box<Sleep>>>,
    /// How long a send waits for the peer to take some of our output (`None`: forever).
    write_timeout: Option<Duration>,
    /// The send's timer for it: output that moves starts it over (a slow peer is no stuck
    /// one).
    write_wait: Option<Pin<Box<Sleep>>>,
    /// The measure of progress when `write_wait` last started.
    write_progress: u64,
    /// Bytes of ours the peer has acknowledged, where the stream can tell (the streams this
    /// crate opens, on Linux): progress that TLS hides from the connection's count.
    acked: Option<fn(&S) -> Option<u64>>,
    drained: bool,
    drained_bytes: usize,
    /// The transport failed: nothing more can be written (queued frames were discarded).
    dead: bool,
    /// An error to report before the stream ends.
    pending_error: Option<Error>,
    /// Writing queued replies (pongs, a close frame) while reading failed: no more are tried,
    /// and the error is reported once the messages already received have been delivered,
    /// before the socket is read again.
    reply_error: Option<io::Error>,
    /// The server's host, for TLS error messages.
    host: Box<str>,
    /// Wakes the reader for keepalive steps and the idle-read timeout (allocated only when
    /// one of them is on).
    timer: Option<Pin<Box<Sleep>>>,
    read_timeout: Option<Duration>,
    /// Since when the reader has waited without data (for the idle-read timeout).
    idle_since: Option<Instant>,
    /// A deadline (keepalive, idle read, close) was found passed with nothing to read: the
    /// stream is read once more, after tokio's I/O driver has run (this wake's turn), before
    /// it counts (see [`Inner::deadline_counts`]).
    look_again: Option<Arc<DriverTurn>>,
    /// The socket was read after the close timeout ended: the next look at it ends the
    /// connection, however much keeps coming (see [`Inner::poll_stage`]).
    read_past_close_deadline: bool,
    /// When the reader first waited for data while keeping the last big message's buffer:
    /// `poll_timers` frees the buffer `KEEP_MESSAGE_BUFFER` later, at that wait or a later
    /// one (so a busy stream of big messages allocates it again about once a second).
    kept_since: Option<Instant>,
    /// When closing began: our close frame queued by `close`, `send`, `Sink::start_send` or
    /// `Sink::close` (a split writer's too), else the reader's first wait for the peer's close after ours was sent.
    /// The close timeout counts from it.
    close_sent_since: Option<Instant>,
    /// The close timeout expired: closing was given up (both halves report it).
    close_timed_out: bool,
    /// The last flush was left pending: the stream (rustls) still holds bytes to write, with
    /// the connection's queue empty.
    unflushed: bool,
    /// Ends our side of the stream above TCP (TLS close_notify) once the close handshake is
    /// done; for the streams this crate opens, used once.
    close_notify: Option<fn(&mut S)>,
}

impl<S> Inner<S> {
    /// What the other half of a split stream waits on besides the stream's readiness: when
    /// it changes, that half is woken (see `split.rs`).
    fn wake_key(&self) -> (State, bool, bool) {
        (self.conn.state(), self.dead, self.close_timed_out)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Reads more bytes into the connection; `Ok(0)` is end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let stream = &mut self.stream;
        let mut pending = false;
        let result = self.conn.receive_into(READ_CHUNK, |target| {
            let polled = match target {
                ReadTarget::Slice(buf) => {
                    let mut rb = ReadBuf::new(buf);
                    Pin::new(&mut *stream)
                        .poll_read(cx, &mut rb)
                        .map_ok(|()| rb.filled().len())
                }
                // Into spare capacity, never zeroed: the buffer is allocated again after
                // every idle wait, and zeroing it each time cost more than the read.
                ReadTarget::Append(buf, max) => {
                    let mut limited = buf.limit(max);
                    std::pin::pin!(stream.read_buf(&mut limited)).poll(cx)
                }
            };
            match polled {
                Poll::Ready(result) => result,
                Poll::Pending => {
                    pending = true;
                    Ok(0)
                }
            }
        });
        if pending {
            // Idle: hold no buffer memory while waiting, but for the last big message's
            // buffer, which `poll_timers` frees after `KEEP_MESSAGE_BUFFER`.
            self.conn.release_io_buffers();
            if self.conn.holds_message_buffer() && self.kept_since.is_none() {
                self.kept_since = Some(::tokio::time::Instant::now().into_std());
            }
            return Poll::Pending;
        }
        if matches!(result, Ok(n) if n > 0) && self.conn.has_keepalive() {
            // A pong among these bytes gives the round trip (`WebSocketStream::latency`).
            self.conn
                .received_at(::tokio::time::Instant::now().into_std());
        }
        Poll::Ready(result)
    }

    /// Writes every queued byte, then flushes the stream.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.dead {
            return Poll::Ready(Err(Error::ConnectionClosed));
        }
        match ready!(self.poll_write_queued(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.transport_error(e, Phase::Write))),
        }
    }

    /// [`Inner::poll_write_out`] for a send (and `Sink::poll_ready` and `poll_flush`): fails
    /// with [`Error::Timeout`] ([`Phase::Write`]) once the peer has taken none of our output
    /// for the write timeout. What was not written stays queued, as in the blocking client:
    /// the next send, flush or read goes on with it.
    fn poll_send_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Poll::Ready(result) = self.poll_write_out(cx) {
            self.write_wait = None;
            return Poll::Ready(result);
        }
        if self.conn.is_terminated() {
            // The peer's close arrived (or the connection failed) with our output stuck: a
            // peer that closed discards what follows its close, so the send ends now rather
            // than when the close timeout gives the connection up.
            self.write_wait = None;
            return Poll::Ready(Err(Error::ConnectionClosed));
        }
        let Some(limit) = self.write_timeout else {
            return Poll::Pending;
        };
        // What the connection handed on, and what the peer acknowledged: the records TLS
        // holds drain without the first moving.
        let acked = self.acked.and_then(|acked| acked(&self.stream));
        let progress = self.conn.written().wrapping_add(acked.unwrap_or(0));
        if self.write_wait.is_none() || self.write_progress != progress {
            // A timeout past what the clock can count to: no timer, the send waits.
            let Some(end) = ::tokio::time::Instant::now().checked_add(limit) else {
                return Poll::Pending;
            };
            match &mut self.write_wait {
                Some(timer) => timer.as_mut().reset(end),
                None => self.write_wait = Some(Box::pin(sleep_until(end))),
            }
            self.write_progress = progress;
        }
        if !expired(&mut self.write_wait, cx) {
            return Poll::Pending;
        }
        self.write_wait = None;
        Poll::Ready(Err(Error::Timeout(Phase::Write)))
    }

    /// [`Inner::poll_write_out`] without its error handling.
    fn poll_write_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.has_pending_output() {
            match ready!(Pin::new(&mut self.stream).poll_write(cx, self.conn.pending_output())) {
                Ok(0) => return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => self.conn.consume_output(n),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        self.unflushed = flushed.is_pending();
        flushed
    }

    /// Whether frames are still to be written: queued in the connection, or held by the
    /// stream after a flush that could not finish (rustls takes them all, then waits for room
    /// like the socket; reading never writes them, unlike the blocking client's rustls).
    fn has_unsent_output(&self) -> bool {
        self.conn.has_pending_output() || self.unflushed
    }

    /// Writes what it can of the queued frames while the caller only reads (pongs, close
    /// replies): a full socket does not hold up messages already received, and a failed write
    /// does not discard them (see `reply_error`).
    fn poll_write_replies(&mut self, cx: &mut Context<'_>) {
        if self.dead || self.reply_error.is_some() || !self.has_unsent_output() {
            return;
        }
        if let Poll::Ready(Err(e)) = self.poll_write_queued(cx) {
            if is_peer_gone(&e) {
                // What the peer sent before it went is read on; the read reports its end.
                self.lose_output();
            } else if !is_timeout(&e) {
                self.reply_error = Some(e);
            }
        }
    }

    /// Maps an I/O error; anything but a timeout kills the connection. A write that finds the
    /// peer gone kills only the output: what the peer sent before it went (its close frame,
    /// with the reason) is still read.
    fn transport_error(&mut self, e: io::Error, phase: Phase) -> Error {
        if phase == Phase::Write && is_peer_gone(&e) && !self.conn.is_terminated() {
            self.lose_output();
        } else if !is_timeout(&e) {
            self.abandon();
        }
        map_io_error(e, phase, &self.host)
    }

    /// Nothing more can be written; reading goes on.
    #[cold]
    fn lose_output(&mut self) {
        self.conn.lose_output();
        self.dead = true;
        self.unflushed = false;
    }

    /// The next message; `None` once the connection is over (after the close handshake,
    /// after an error, or at the end of the stream).
    fn poll_next_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        match ready!(self.poll_stage(cx)) {
            Some(true) => match self.conn.take_staged() {
                Some(message) => Poll::Ready(Some(Ok(message))),
                None => Poll::Ready(None),
            },
            Some(false) => Poll::Ready(Some(Err(self.take_failure()))),
            None => Poll::Ready(None),
        }
    }

    /// Makes the next message ready in the connection (to be taken or borrowed): `Some(true)`;
    /// `Some(false)` when it failed, with the error in `pending_error` for the caller to take
    /// at once (a flag rather than the error itself keeps the per-message return value
    /// small); `None` once the connection is over.
    fn poll_stage(&mut self, cx: &mut Context<'_>) -> Poll<Option<bool>> {
        loop {
            if self.pending_error.is_some() {
                // A deferred error: it stays parked for the caller to take.
                return Poll::Ready(Some(false));
            }
            if !self.conn.is_terminated() {
                self.poll_write_replies(cx);
            }
            match self.conn.stage_next() {
                Ok(true) => {
                    self.poll_write_replies(cx);
                    return Poll::Ready(Some(true));
                }
                Ok(false) if self.conn.is_terminated() => {
                    if self.drained && self.conn.state() == State::Failed {
                        // The peer ended the stream without a close: nothing still queued
                        // (pongs) is worth a wait.
                        return Poll::Ready(None);
                    }
                    // One close timeout bounds both flushing the close reply (or the close
                    // frame of a failure) and waiting for the server to close TCP; also
                    // frames still to write after the end of the stream (pongs behind a
                    // reset), which would otherwise be waited for forever.
                    if self.close_wait.is_none() && (!self.drained || self.has_unsent_output()) {
                        self.close_wait = self.close_timeout.map(|t| Box::pin(sleep(t)));
                    }
                    if self.has_unsent_output() {
                        match self.poll_write_out(cx) {
                            Poll::Ready(Ok(())) => {}
                            Poll::Ready(Err(_)) => return Poll::Ready(None),
                            Poll::Pending => {
                                if !expired(&mut self.close_wait, cx) {
                                    return Poll::Pending;
                                }
                                self.abandon();
                                self.close_wait = None;
                                return Poll::Ready(None);
                            }
                        }
                    }
                    ready!(self.poll_drain(cx));
                    return Poll::Ready(None);
                }
                Ok(false) => {
                    if let Some(e) = self.reply_error.take() {
                        // Every message received before it has been delivered.
                        let e = self.transport_error(e, Phase::Write);
                        return self.staging_failed(e);
                    }
                }
                Err(e) => {
                    // The close frame of the failure, if the socket takes it now. Nothing the
                    // peer sends is read after a failure (RFC 6455 section 7.1.7): the stream
                    // ends after the error, with no wait for the server to close TCP.
                    let _ = self.poll_write_out(cx);
                    self.drained = true;
                    return self.staging_failed(e);
                }
            }
            // The close timeout, also while data keeps coming (when the timers do not run),
            // once the socket has been read past it: what arrived by then (the peer's close,
            // unseen while the runtime's thread was busy) is staged first.
            let closing_overdue = self.conn.state() == State::CloseSent
                && self.close_deadline_passed(::tokio::time::Instant::now().into_std());
            if closing_overdue && self.read_past_close_deadline {
                let now = ::tokio::time::Instant::now().into_std();
                if let Err(e) = self.close_overdue(now) {
                    return self.staging_failed(e);
                }
            }
            let filled = match self.poll_fill(cx) {
                Poll::Ready(filled) => filled,
                Poll::Pending => match self.poll_timers(cx) {
                    Poll::Ready(Some(e)) => return self.staging_failed(e),
                    // A ping was queued: go round to write it.
                    Poll::Ready(None) => continue,
                    Poll::Pending => return Poll::Pending,
                },
            };
            self.idle_since = None;
            self.look_again = None;
            self.read_past_close_deadline |= closing_overdue;
            match filled {
                Ok(0) => {
                    if let Err(e) = self.conn.receive_eof() {
                        self.drained = true;
                        return self.staging_failed(e);
                    }
                    self.drained = true;
                }
                Ok(_) => {}
                Err(e) => {
                    let e = self.transport_error(e, Phase::Read);
                    return self.staging_failed(e);
                }
            }
        }
    }

    /// Parks the error of a failed [`Inner::poll_stage`] for its caller.
    #[cold]
    fn staging_failed(&mut self, e: Error) -> Poll<Option<bool>> {
        self.pending_error = Some(e);
        Poll::Ready(Some(false))
    }

    /// The error [`Inner::poll_stage`] parked.
    #[cold]
    fn take_failure(&mut self) -> Error {
        self.pending_error.take().unwrap_or(Error::ConnectionClosed)
    }

    /// While no data comes: runs the keepalive clock and the idle-read timeout, and arms the
    /// timer for the next step. `Ready(None)`: a ping was queued.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<Option<Error>> {
        let closing = self.conn.state() == State::CloseSent && self.close_timeout.is_some();
        if self.read_timeout.is_none()
            && !self.conn.has_keepalive()
            && self.kept_since.is_none()
            && !closing
        {
            return Poll::Pending;
        }
        // tokio's clock, which its timers follow (it may be paused in tests).
        let now = ::tokio::time::Instant::now().into_std();
        let queued = self.conn.queued_output();
        if self.conn.keepalive_overdue(now) && !self.deadline_counts(cx) {
            return Poll::Pending;
        }
        let mut wake = match self.conn.poll_keepalive(now) {
            Ok(wake) => wake,
            Err(e) => {
                // The peer is gone: nothing to flush, no close handshake to wait for.
                self.drained = true;
                self.dead = true;
                return Poll::Ready(Some(e));
            }
        };
        if self.conn.queued_output() > queued {
            return Poll::Ready(None);
        }
        // The idle timeout is for an open connection: closing has its own timeout. Without
        // one, the idle timeout still bounds the wait for the peer's close (as the blocking
        // client's reads), or a silent peer would hold it forever.
        let idle = self.read_timeout.filter(|_| match self.conn.state() {
            State::Open => true,
            State::CloseSent => self.close_timeout.is_none(),
            _ => false,
        });
        if let Some(limit) = idle {
            let since = *self.idle_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= limit {
                if !self.deadline_counts(cx) {
                    return Poll::Pending;
                }
                self.idle_since = Some(now);
                return Poll::Ready(Some(Error::Timeout(Phase::Read)));
            }
            // A read timeout the clock cannot count to never expires.
            if let Some(idle_end) = since.checked_add(limit) {
                wake = Some(wake.map_or(idle_end, |at| at.min(idle_end)));
            }
        }
        if closing {
            if self.close_deadline_passed(now) && !self.deadline_counts(cx) {
                return Poll::Pending;
            }
            match self.close_overdue(now) {
                Err(e) => return Poll::Ready(Some(e)),
                Ok(Some(end)) => wake = Some(wake.map_or(end, |at| at.min(end))),
                Ok(None) => {}
            }
        }
        if let Some(since) = self.kept_since {
            let end = since + KEEP_MESSAGE_BUFFER;
            if now >= end {
                self.conn.release_message_buffer();
                self.kept_since = None;
            } else {
                wake = Some(wake.map_or(end, |at| at.min(end)));
            }
        }
        let Some(at) = wake else {
            return Poll::Pending;
        };
        let at = ::tokio::time::Instant::from_std(at);
        let timer = self.timer.get_or_insert_with(|| Box::pin(sleep_until(at)));
        timer.as_mut().reset(at);
        match timer.as_mut().poll(cx) {
            // Due already: go round, the next call acts on it.
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether a deadline found passed (with nothing to read) counts now. Not before the
    /// socket has been read after a turn of tokio's I/O driver: tokio learns that bytes
    /// arrived only when its driver runs, so after the runtime's thread was busy (a handler
    /// doing synchronous work, past a deadline) the answer may be waiting in the socket
    /// unseen. The task is woken after the driver's next turn (tokio's `yield_now` defers
    /// the wake so, on a runtime's worker; elsewhere, as in `block_on`, it wakes at once,
    /// and the other workers run the driver) to read once more; polls before that wake
    /// (another branch of a `select!`) wait for it.
    fn deadline_counts(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(turn) = &self.look_again {
            if turn.passed.load(Ordering::Acquire) {
                self.look_again = None;
                return true;
            }
            if turn.waker.will_wake(cx.waker()) {
                return false;
            }
        }
        let turn = Arc::new(DriverTurn {
            waker: cx.waker().clone(),
            passed: AtomicBool::new(false),
        });
        let waker = Waker::from(Arc::clone(&turn));
        // Always pending at its first poll, with the wake deferred past the driver's turn.
        let _ = std::pin::pin!(::tokio::task::yield_now()).poll(&mut Context::from_waker(&waker));
        self.look_again = Some(turn);
        false
    }

    /// Whether the close timeout has ended at `now` (never before closing began).
    fn close_deadline_passed(&self, now: Instant) -> bool {
        self.close_sent_since.is_some() && self.close_deadline(now).is_some_and(|end| now >= end)
    }

    /// Our close frame went out and the peer's close has not come within the close timeout
    /// (counted from the first look after the close): the connection ends, with this error.
    /// Data still arriving does not extend it. Otherwise, when the timeout ends (`None`:
    /// never).
    #[cold]
    fn close_overdue(&mut self, now: Instant) -> Result<Option<Instant>, Error> {
        if self.close_timeout.is_none() {
            return Ok(None);
        }
        self.close_sent_since.get_or_insert(now);
        match self.close_deadline(now) {
            Some(end) if now >= end => {
                self.close_timed_out();
                Err(Error::Timeout(Phase::Close))
            }
            end => Ok(end),
        }
    }

    /// When the close timeout ends: that long after closing began (or after `now`, if it has
    /// not been seen to begin); `None` without a close timeout, or past all time.
    fn close_deadline(&self, now: Instant) -> Option<Instant> {
        let limit = self.close_timeout?;
        self.close_sent_since.unwrap_or(now).checked_add(limit)
    }

    /// Closing took longer than the close timeout: it is given up.
    fn close_timed_out(&mut self) {
        self.close_timed_out = true;
        self.abandon();
    }

    /// Gives the connection up: nothing more is written, read or waited for.
    fn abandon(&mut self) {
        self.conn.abort();
        self.drained = true;
        self.dead = true;
    }

    /// Queues our close frame, and starts the close timeout's clock (for a close message
    /// sent as `Sink::close` sends it: see [`Inner::poll_close`]).
    fn queue_close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if self.conn.state() == State::Open && self.conn.is_output_lost() {
            // An earlier write found the peer gone: no close can go out, none is needed.
            // Closing began all the same: a flush goes the way of the close (`Sink::send`
            // of a close is then as `send`'s: no error).
            self.close_queued();
            return Ok(());
        }
        self.conn.close(frame)?;
        self.close_queued();
        Ok(())
    }

    /// Starts the close timeout's clock when our close frame is queued, if it has not
    /// started: the timeout bounds closing as a whole, however long the frame takes to go
    /// out (a writer's `close` and the reader's wait for the reply share it).
    fn close_queued(&mut self) {
        if self.close_sent_since.is_none() {
            let now = ::tokio::time::Instant::now().into_std();
            self.close_sent_since = Some(now);
            // Without a close timeout, the idle-read timeout bounds the wait for the peer's
            // close: from now, not from when the connection last went quiet.
            self.idle_since = Some(now);
        }
    }

    /// After the close handshake, a client lets the server close TCP first (RFC 6455 7.1.1),
    /// for at most the close timeout.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.drained {
            return Poll::Ready(());
        }
        if self.conn.role() != Role::Client {
            return self.poll_server_shutdown(cx);
        }
        if self.close_wait.is_none() {
            // Without a close timeout, the idle-read timeout bounds the wait (as it bounds the
            // blocking client's).
            let limit = self.close_timeout.or(self.read_timeout);
            self.close_wait = limit.map(|t| Box::pin(sleep(t)));
        }
        if let Some(close_notify) = self.close_notify.take() {
            // Our close frame is out (not merely queued): TLS may say it has no more to send.
            if self.conn.state() == State::Closed && !self.has_unsent_output() && !self.dead {
                close_notify(&mut self.stream);
                self.unflushed = true;
            }
        }
        let mut scratch = [0u8; 1024];
        loop {
            if let Some(deadline) = self.close_wait.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    break;
                }
            }
            if self.unflushed && Pin::new(&mut self.stream).poll_flush(cx).is_ready() {
                // Sent, or it cannot be: either way the server's close is waited for.
                self.unflushed = false;
            }
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.stream).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    self.drained_bytes += rb.filled().len();
                    if self.drained_bytes >= CLOSE_DRAIN_LIMIT {
                        break;
                    }
                }
                Poll::Ready(_) => break,
            }
        }
        self.drained = true;
        self.close_wait = None;
        Poll::Ready(())
    }

    /// After the close handshake, the server closes TCP first (RFC 6455 7.1.1): it shuts its
    /// side down (TLS close_notify, then FIN) at once, rather than when the stream is
    /// dropped, so that a client is not left waiting its close timeout.
    fn poll_server_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.conn.state() == State::Closed && !self.dead {
            if self.close_wait.is_none() {
                self.close_wait = self.close_timeout.map(|t| Box::pin(sleep(t)));
            }
            let shut = Pin::new(&mut self.stream).poll_shutdown(cx);
            if shut.is_pending() && !expired(&mut self.close_wait, cx) {
                return Poll::Pending;
            }
        }
        self.drained = true;
        self.close_wait = None;
        Poll::Ready(())
    }

    /// Waits until the queued output is below the write buffer bound.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.dead {
            // The peer is gone with reading still going on: a close is still taken (there
            // is nothing to send, see `queue_close`), and `start_send` refuses the rest.
            if self.conn.is_output_lost() && !self.conn.is_terminated() {
                return Poll::Ready(Ok(()));
            }
            return Poll::Ready(Err(Error::ConnectionClosed));
        }
        if self.conn.queued_output() >= self.write_buffer {
            // The write timeout ran out before there was room: nothing was queued, which
            // `SendQueueFull` says (as the blocking client's), unlike `Timeout(Write)`.
            return match ready!(self.poll_send_out(cx)) {
                Err(Error::Timeout(Phase::Write)) => Poll::Ready(Err(Error::SendQueueFull {
                    queued: self.conn.queued_output(),
                })),
                other => Poll::Ready(other),
            };
        }
        Poll::Ready(Ok(()))
    }

    /// Writing failed because the peer is gone (output lost, reading goes on): not the
    /// outcome of closing, which reading tells (what the peer sent before it went, its close
    /// frame included, is still read).
    fn unless_peer_gone(&self, written: Result<(), Error>) -> Result<(), Error> {
        match written {
            Err(Error::ConnectionReset) if self.conn.is_output_lost() => Ok(()),
            other => other,
        }
    }

    /// Sends the close frame within the close timeout (`Sink::close`, the writing half's
    /// `close`); the reading half then receives the peer's close. A peer already gone is
    /// not an error here: the reading half tells how it ended.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The reader found the connection ended without a close (a FIN, a protocol
        // violation): there was nothing to close, as after a reset (`poll_write_out` reports
        // a dead one) or for the unsplit stream's `close`, once the close frame of a
        // failure is out.
        let failed = self.conn.state() == State::Failed && !self.close_timed_out && !self.dead;
        if self.conn.can_send() && !self.close_timed_out {
            self.queue_close(None)?;
        }
        let written = ready!(self.poll_write_close(cx));
        match failed {
            true => Poll::Ready(written.and(Err(Error::ConnectionClosed))),
            false => Poll::Ready(written),
        }
    }

    /// `Sink::start_send`: a [`Message::Close`] is queued as `send` queues it, starting the
    /// close timeout's clock, so that the flush that follows is bounded by it.
    fn start_send(&mut self, item: Message) -> Result<(), Error> {
        match item {
            Message::Close(frame) => self.queue_close(frame),
            item => self.conn.send(item),
        }
    }

    /// `Sink::poll_flush`: once closing began (our close frame is queued), within the close
    /// timeout as `Sink::close`, since a peer that reads nothing would hold it forever.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.close_sent_since.is_some() {
            self.poll_write_close(cx)
        } else {
            self.poll_send_out(cx)
        }
    }

    /// Writes what is queued, our close frame last, within the close timeout (counted from
    /// when closing began).
    fn poll_write_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.close_timed_out {
            // The reader's wait for the reply ran out first.
            return Poll::Ready(Err(Error::Timeout(Phase::Close)));
        }
        if self.conn.is_output_lost() && !self.conn.is_terminated() {
            // An earlier write found the peer gone: nothing can go out, and reading tells
            // how it ended.
            return Poll::Ready(Ok(()));
        }
        // A timer of its own: the reader's may be bounding its own wait meanwhile. It ends
        // the close timeout after closing began (an earlier `close` cancelled by a shorter
        // timer included), not a whole close timeout after this call.
        if self.close_send_wait.is_none() && self.has_unsent_output() {
            let now = ::tokio::time::Instant::now().into_std();
            self.close_send_wait = self
                .close_deadline(now)
                .map(|end| Box::pin(sleep_until(end.into())));
        }
        match self.poll_write_out(cx) {
            Poll::Ready(result) => {
                self.close_send_wait = None;
                Poll::Ready(self.unless_peer_gone(result))
            }
            Poll::Pending => {
                if !expired(&mut self.close_send_wait, cx) {
                    return Poll::Pending;
                }
                self.close_send_wait = None;
                // Nothing is left to wait for: the stream (or reading half) ends at once.
                self.close_timed_out();
                Poll::Ready(Err(Error::Timeout(Phase::Close)))
            }
        }
    }
}

/// Whether `timer` is set and has fired (registering the waker while it has not).
fn expired(timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> bool {
    timer
        .as_mut()
        .is_some_and(|t| t.as_mut().poll(cx).is_ready())
}

/// An async WebSocket connection over `S`.
pub struct WebSocketStream<S> {
    inner: Inner<S>,
}

impl<S> std::fmt::Debug for WebSocketStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketStream")
            .field("role", &self.inner.conn.role())
            .field("state", &self.inner.conn.state())
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketStream<S> {
    /// Wraps a stream on which the handshake has happened and a protocol connection;
    /// `leftover` are bytes already read past the handshake.
    pub fn from_connection(stream: S, mut conn: Connection, leftover: &[u8]) -> Self {
        conn.receive(leftover);
        WebSocketStream {
            inner: Inner {
                stream,
                conn,
                write_buffer: DEFAULT_WRITE_BUFFER,
                close_timeout: Some(Duration::from_secs(5)),
                close_wait: None,
                close_send_wait: None,
                write_timeout: None,
                write_wait: None,
                write_progress: 0,
                acked: None,
                drained: false,
                drained_bytes: 0,
                dead: false,
                reply_error: None,
                pending_error: None,
                host: "".into(),
                timer: None,
                read_timeout: None,
                idle_since: None,
                look_again: None,
                read_past_close_deadline: false,
                kept_since: None,
                close_sent_since: None,
                close_timed_out: false,
                unflushed: false,
                close_notify: None,
            },
        }
    }

    /// Bounds the bytes queued for sending: past it, `Sink::poll_ready` (and `send`) wait for
    /// the socket to take them (default 128 KiB). A single message is never split.
    pub fn set_write_buffer(&mut self, bytes: usize) {
        self.inner.write_buffer = bytes.max(1);
    }

    /// Pings every interval and ends the stream with [`Error::KeepaliveTimeout`] when a pong
    /// is overdue (see [`ClientBuilder::keepalive`]). Runs while the stream (or its reading
    /// half) is polled.
    pub fn set_keepalive(&mut self, keepalive: Option<Keepalive>) {
        let now = ::tokio::time::Instant::now().into_std();
        self.inner.conn.set_keepalive(keepalive, now);
    }

    /// The round trip of the last keepalive ping: from when it was queued to when the read
    /// that brought its pong completed (on tokio's clock). `None` with keepalive off or
    /// before the first pong. See [`crate::WebSocket::latency`].
    pub fn latency(&self) -> Option<Duration> {
        self.inner.conn.keepalive_rtt()
    }

    /// Fails a send (and `Sink::poll_ready` and `poll_flush`) with [`Error::Timeout`]
    /// (`Phase::Write`) when the peer takes none of our output for this long (default: wait
    /// forever): a peer that stops reading cannot hold a send forever. What was not written
    /// stays queued; the stream stays usable. Not closing, which the close timeout bounds.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.write_timeout = timeout;
        self.inner.write_wait = None;
    }

    /// Yields [`Error::Timeout`] (`Phase::Read`) from `recv` when no data arrives for this
    /// long; the stream stays usable, and the wait starts again.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.read_timeout = timeout;
        self.inner.idle_since = None;
    }

    /// How long a client waits for the server to close TCP after the close handshake.
    /// Without one (`None`), the read timeout, if set, bounds the wait for the peer's close
    /// and for the server to close TCP, not writing: a peer that reads nothing still holds
    /// `close` (and `Sink::close`) while our close frame waits behind a full socket (wrap it
    /// in `tokio::time::timeout`).
    pub fn set_close_timeout(&mut self, timeout: Option<Duration>) {
        self.inner.close_timeout = timeout;
    }

    /// The next message or control frame; `None` when the connection is over. Cancellation
    /// safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.inner.poll_next_message(cx)).await
    }

    /// The next message or control frame, borrowed instead of copied: the fast way to read
    /// (no allocation for a whole unfragmented message). It stays valid until the next call
    /// on this stream. Cancellation safe.
    pub fn recv_ref(&mut self) -> RecvRef<'_, S> {
        RecvRef { ws: Some(self) }
    }

    /// Sends a message or control frame and waits until it is written.
    ///
    /// With a write timeout ([`WebSocketStream::set_write_timeout`]), a peer that takes none
    /// of our output for that long fails it: [`Error::Timeout`] ([`Phase::Write`]) when the
    /// message was queued (it goes out with the next send, flush or read), or
    /// [`Error::SendQueueFull`] when earlier output still filled the write buffer and the
    /// message was not queued (send it again once the peer reads).
    ///
    /// A [`Message::Close`] is sent as `Sink::close` sends it: within the close timeout, so a
    /// peer that reads nothing cannot hold it forever ([`Error::Timeout`] with
    /// [`Phase::Close`] then); [`WebSocketStream::close`] also waits for the peer's close.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        match message.into() {
            Message::Close(frame) => {
                self.inner.queue_close(frame)?;
                poll_fn(|cx| self.inner.poll_close(cx)).await
            }
            message => self.queue_and_write(|conn| conn.send(message)).await,
        }
    }

    /// Queues a message without waiting for room in the write buffer (for the reconnecting
    /// client's subscriptions: its caller's own bounded list).
    pub(crate) fn queue(&mut self, message: Message) -> Result<(), Error> {
        self.inner.conn.send(message)
    }

    /// Writes what the socket takes now of the queued output, without waiting (the rest
    /// goes out with the next read or send).
    pub(crate) fn write_what_fits(&mut self) -> Result<(), Error> {
        let waker = std::task::Waker::from(std::sync::Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        match self.inner.poll_write_out(&mut cx) {
            Poll::Ready(Err(e)) => Err(e),
            Poll::Ready(Ok(())) | Poll::Pending => Ok(()),
        }
    }

    /// Waits for room in the write buffer, queues with `queue`, and waits until it is written
    /// (what every send does).
    async fn queue_and_write(
        &mut self,
        queue: impl FnOnce(&mut Connection) -> Result<(), Error>,
    ) -> Result<(), Error> {
        poll_fn(|cx| self.inner.poll_ready(cx)).await?;
        queue(&mut self.inner.conn)?;
        poll_fn(|cx| self.inner.poll_send_out(cx)).await
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send(Message::text(text)).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: impl Into<bytes::Bytes>) -> Result<(), Error> {
        self.send(Message::Binary(data.into())).await
    }

    /// Sends a ping.
    pub async fn ping(&mut self, data: impl Into<bytes::Bytes>) -> Result<(), Error> {
        self.send(Message::Ping(data.into())).await
    }

    /// Sends a text or binary message as several frames of at most `fragment_size` bytes of
    /// payload each (after compression, if it was negotiated), and waits until they are
    /// written. As [`crate::WebSocket::send_fragmented`].
    pub async fn send_fragmented(
        &mut self,
        message: impl Into<Message>,
        fragment_size: usize,
    ) -> Result<(), Error> {
        let message = message.into();
        self.queue_and_write(|conn| conn.send_fragmented(&message, fragment_size))
            .await
    }

    /// Sends one part of a message whose size need not be known up front, and waits until it
    /// is written: as [`crate::WebSocket::send_part`].
    pub async fn send_part<'a>(
        &mut self,
        part: impl Into<MessagePart<'a>>,
        last: bool,
    ) -> Result<(), Error> {
        let part = part.into();
        self.queue_and_write(|conn| conn.send_part(part, last))
            .await
    }

    /// Sends a close frame and waits for the peer's, discarding messages still in flight,
    /// within the close timeout (counted from when closing began: the first `close`, or
    /// `Sink::close`); then lets the server close TCP first (a second, separate
    /// close timeout). Returns the peer's close frame (`None` when it carried no status code),
    /// also when the close handshake was already over: after a `recv` that returned the
    /// peer's close, a call after one cancelled once the frame was read, or a second call.
    ///
    /// `frame: None` sends a close frame without a status code (the server sees 1005, "no
    /// status"); to close with 1000, pass
    /// `Some(wsc::CloseFrame::new(wsc::CloseCode::NORMAL, "done"))`.
    ///
    /// A peer that sent its close and then reset the connection before ours could be
    /// written still closed: its close frame is returned. One that reset it without a close
    /// frame fails with [`Error::ConnectionReset`].
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<Option<CloseFrame>, Error> {
        let before = self.inner.conn.state();
        // The peer is gone: no close to send, but its own may still be read.
        let output_lost = self.inner.conn.is_output_lost();
        if before == State::Open && !output_lost {
            self.inner.conn.close(frame)?;
            self.inner.close_queued();
        }
        if matches!(before, State::Closed | State::Failed) {
            // The close handshake is over (or failed): still flush the queued close frame
            // and let the server close TCP, both bounded by the close timeout.
            while self.recv().await.is_some() {}
            return match before {
                // However it was read (by `recv`, by a `close` cancelled after reading it).
                State::Closed => Ok(self.inner.conn.peer_close().cloned()),
                _ => Err(Error::ConnectionClosed),
            };
        }
        // The close timeout counts from when closing began, not from this call: a `close`
        // cancelled by a shorter timer and called again does not start it over.
        self.inner.close_queued();
        let deadline = self
            .inner
            .close_deadline(::tokio::time::Instant::now().into_std());
        let exchange = async {
            if !output_lost {
                let written = poll_fn(|cx| self.inner.poll_write_out(cx)).await;
                // A peer gone before our close went out may have sent its own first.
                self.inner.unless_peer_gone(written)?;
            }
            loop {
                match self.recv().await {
                    Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => {}
                    // No close timeout: the idle-read timeout ended the wait for the peer's
                    // close, which closing gives up on (as the blocking `close_and_wait`).
                    Some(Err(Error::Timeout(Phase::Read))) => {
                        self.inner.close_timed_out();
                        return Err(Error::Timeout(Phase::Close));
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Err(Error::ConnectionClosed),
                }
            }
        };
        match deadline {
            Some(at) => match timeout_at(at.into(), exchange).await {
                Ok(exchanged) => exchanged?,
                Err(_) => {
                    // Closing is over, unfinished: the stream ends at once, not after a
                    // second close timeout.
                    self.inner.close_timed_out();
                    return Err(Error::Timeout(Phase::Close));
                }
            },
            None => exchange.await?,
        }
        // The drain after the close handshake is bounded by its own timer.
        while self.recv().await.is_some() {}
        Ok(self.inner.conn.peer_close().cloned())
    }

    /// The protocol connection (state, negotiated compression).
    pub fn connection(&self) -> &Connection {
        &self.inner.conn
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.inner.stream
    }

    /// The stream, mutably, for its settings (reading or writing it directly corrupts the
    /// connection).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.stream
    }

    /// Splits into a reading and a writing half, usable from two tasks at once;
    /// [`WsReader::reunite`] puts them back together. The reader comes first: the opposite
    /// of `StreamExt::split`'s `(sink, stream)`, which works too (this method, being the
    /// type's own, is the one `ws.split()` calls). The reader is a `Stream`, the writer a
    /// `Sink`.
    ///
    /// For many tasks that send, and one that may close: give the writer to one task that
    /// takes messages and the close from a channel, rather than share it behind a lock. A
    /// send waits while the peer takes nothing (with no write timeout, for as long as the
    /// peer lives), and a close behind it would wait as long; a writer task's channel does
    /// not (`try_send`), and with [`ClientBuilder::write_timeout`](crate::ClientBuilder::write_timeout)
    /// no send waits past it. A send waiting when the peer's close arrives ends at once.
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        split::halves(self.inner)
    }
}

/// The wake of [`Inner::deadline_counts`]: records that it came (after a turn of tokio's I/O
/// driver), then wakes the task.
#[derive(Debug)]
struct DriverTurn {
    waker: Waker,
    passed: AtomicBool,
}

impl Wake for DriverTurn {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.passed.store(true, Ordering::Release);
        self.waker.wake_by_ref();
    }
}

/// The future of [`WebSocketStream::recv_ref`]: written out rather than an `async fn`, as
/// the per-message step of the fastest read path.
#[must_use = "futures do nothing unless polled"]
pub struct RecvRef<'a, S> {
    /// Until the message is handed out (it borrows the stream for `'a`).
    ws: Option<&'a mut WebSocketStream<S>>,
}

impl<S> std::fmt::Debug for RecvRef<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvRef").finish_non_exhaustive()
    }
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Future for RecvRef<'a, S> {
    type Output = Option<Result<MessageRef<'a>, Error>>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Polled again after it completed: nothing more (the stream is no longer held).
        let Some(ws) = self.ws.take() else {
            return Poll::Ready(None);
        };
        // The common case inline, in the caller: a whole message waiting in the buffer,
        // nothing to write. Always inlined, frame check and all (about 1.3 KB of code in the
        // caller's state machine): as a call it cost 16 of 312 instructions per 100-byte
        // message (callgrind).
        let inner = &mut ws.inner;
        if inner.pending_error.is_none()
            && !inner.conn.has_pending_output()
            && inner.conn.stage_lent()
        {
            return Poll::Ready(ws.inner.conn.staged().map(Ok));
        }
        self.poll_general(ws, cx)
    }
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> RecvRef<'a, S> {
    /// Everything but the common case: reading, writing, errors, the end.
    #[inline(never)]
    fn poll_general(
        &mut self,
        ws: &'a mut WebSocketStream<S>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<MessageRef<'a>, Error>>> {
        match ws.inner.poll_stage(cx) {
            Poll::Pending => {
                self.ws = Some(ws);
                Poll::Pending
            }
            Poll::Ready(Some(true)) => Poll::Ready(ws.inner.conn.staged().map(Ok)),
            Poll::Ready(Some(false)) => Poll::Ready(Some(Err(ws.inner.take_failure()))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketStream<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_next_message(cx)
    }
}

/// A [`Message::Close`] given to `start_send` (by `SinkExt::send` or `feed`) begins closing:
/// flushing it is bounded by the close timeout as `Sink::close` is ([`Error::Timeout`] with
/// [`Phase::Close`] past it), so a peer that reads nothing cannot hold the flush forever.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketStream<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().inner.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().inner.poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Config;
    use ::tokio::io::AsyncWriteExt;
    use ::tokio::time::timeout;

    /// A 300 KiB binary frame as a server sends it (unmasked).
    fn big_frame() -> Vec<u8> {
        let mut frame = vec![0x82, 127];
        frame.extend_from_slice(&(300u64 << 10).to_be_bytes());
        frame.extend((0..300u32 << 10).map(|i| (i % 253) as u8));
        frame
    }

    /// The buffer of a big message is kept while the connection waits for a moment (the next
    /// big message reuses it), and freed once it has been idle for `KEEP_MESSAGE_BUFFER`.
    #[::tokio::test]
    async fn an_idle_connection_frees_the_last_big_message_buffer_soon() {
        let (client_io, mut server_io) = ::tokio::io::duplex(1 << 20);
        let conn = Connection::new(Role::Client, Config::default());
        let mut ws = WebSocketStream::from_connection(client_io, conn, &[]);
        for _ in 0..2 {
            server_io.write_all(&big_frame()).await.unwrap();
            match ws.recv_ref().await {
                Some(Ok(MessageRef::Binary(data))) => assert_eq!(data.len(), 300 << 10),
                other => panic!("expected the big message, got {other:?}"),
            }
            // Nothing more comes: the reader waits, keeping the buffer for now.
            assert!(timeout(Duration::from_millis(50), ws.recv_ref())
                .await
                .is_err());
            assert!(ws.inner.conn.holds_message_buffer());
        }
        // Idle for longer than KEEP_MESSAGE_BUFFER: freed, without any data arriving.
        let wait = KEEP_MESSAGE_BUFFER + Duration::from_millis(500);
        assert!(timeout(wait, ws.recv_ref()).await.is_err());
        assert!(!ws.inner.conn.holds_message_buffer());
        // The connection still works.
        server_io.write_all(&big_frame()).await.unwrap();
        assert!(matches!(
            ws.recv_ref().await,
            Some(Ok(MessageRef::Binary(_)))
        ));
    }
}
