//! The two halves of a split [`WebSocketStream`](super::WebSocketStream): one connection
//! state behind a lock, and a waker that wakes both halves.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use ::tokio::io::{AsyncRead, AsyncWrite};
use futures_core::Stream;
use futures_sink::Sink;

use super::{Inner, WebSocketStream};
use crate::error::Error;
use crate::proto::{CloseFrame, Connection, Message, MessagePart};

/// Wakes both halves on any readiness of the shared stream. The stream keeps one waker per
/// direction, and both halves may write (the reader writes pongs and close replies), so a
/// waker registered by one half could otherwise replace the other's and lose its wakeup.
/// Waking both costs at most a spurious poll.
#[derive(Default)]
struct FanOut {
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake(&self.reader);
        wake(&self.writer);
    }
}

/// Wakes the half whose waker is in `slot`, if it waits.
fn wake(slot: &Mutex<Option<Waker>>) {
    let waker = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(w) = waker {
        w.wake();
    }
}

struct Shared<S> {
    inner: Mutex<Inner<S>>,
    wakers: Arc<FanOut>,
    /// The fan-out waker handed to the stream, built once.
    waker: Waker,
}

impl<S> Shared<S> {
    /// Records `cx`'s waker for one side, and locks the state.
    fn enter(&self, side: &Mutex<Option<Waker>>, cx: &Context<'_>) -> MutexGuard<'_, Inner<S>> {
        let mut slot = side.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *slot = Some(cx.waker().clone());
        }
        drop(slot);
        self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        // A panic while polling cannot leave the protocol state half-updated in a way that
        // matters more than the panic itself: keep going with the state as it is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state; when it changed what the other half may wait on with no
    /// readiness of the stream to come (the connection's state, its death, a close that
    /// timed out), wakes that half (`other`): a reader waiting with no timer armed must
    /// start the close timeout once the writer's close is out, and a writer waiting for
    /// room in a full socket must end once the reader finds the peer dead.
    fn update<T>(
        inner: &mut Inner<S>,
        other: &Mutex<Option<Waker>>,
        f: impl FnOnce(&mut Inner<S>) -> T,
    ) -> T {
        let before = inner.wake_key();
        let out = f(inner);
        if inner.wake_key() != before {
            wake(other);
        }
        out
    }
}

/// The reading half: a [`Stream`] of messages; answers pings by itself.
pub struct WsReader<S> {
    shared: Arc<Shared<S>>,
}

/// The writing half: a [`Sink`] of messages, with `send` and `close`.
pub struct WsWriter<S> {
    shared: Arc<Shared<S>>,
}

impl<S> std::fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader").finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    fn poll_message(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        let mut inner = self.shared.enter(&self.shared.wakers.reader, cx);
        Shared::update(&mut inner, &self.shared.wakers.writer, |inner| {
            inner.poll_next_message(&mut Context::from_waker(&self.shared.waker))
        })
    }

    /// The next message; `None` when the connection is over. Cancellation safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    /// The round trip of the last keepalive ping (see [`WebSocketStream::latency`]): the
    /// pongs come in on this half.
    pub fn latency(&self) -> Option<std::time::Duration> {
        self.shared.lock().conn.keepalive_rtt()
    }

    /// Puts the two halves of one stream back together (for `recv_ref`, `close` with the
    /// peer's frame, `get_mut`...). Halves of different streams are handed back.
    pub fn reunite(self, writer: WsWriter<S>) -> Result<WebSocketStream<S>, (Self, WsWriter<S>)> {
        if !Arc::ptr_eq(&self.shared, &writer.shared) {
            return Err((self, writer));
        }
        drop(writer);
        let shared = Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| unreachable!("the two halves hold the only references"));
        let inner = shared.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(WebSocketStream { inner })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsReader<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_message(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    fn with<T>(
        &self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Inner<S>, &mut Context<'_>) -> T,
    ) -> T {
        let mut inner = self.shared.enter(&self.shared.wakers.writer, cx);
        Shared::update(&mut inner, &self.shared.wakers.reader, |inner| {
            f(inner, &mut Context::from_waker(&self.shared.waker))
        })
    }

    /// Changes the state outside a poll (queueing), waking the reader as [`Shared::update`]
    /// says.
    fn locked<T>(&self, f: impl FnOnce(&mut Inner<S>) -> T) -> T {
        Shared::update(&mut self.shared.lock(), &self.shared.wakers.reader, f)
    }

    /// Sends a message or control frame and waits until it is written, within the write
    /// timeout as [`WebSocketStream::send`]. A [`Message::Close`] is sent as
    /// [`WsWriter::close`] sends it: within the close timeout.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        match message.into() {
            Message::Close(frame) => {
                self.locked(|inner| inner.queue_close(frame))?;
                poll_fn(|cx| self.with(cx, |inner, cx| inner.poll_close(cx))).await
            }
            message => self.queue_and_write(|conn| conn.send(message)).await,
        }
    }

    /// Waits for room in the write buffer, queues with `queue`, and waits until it is written
    /// (what every send does; the lock is held only to queue).
    async fn queue_and_write(
        &mut self,
        queue: impl FnOnce(&mut Connection) -> Result<(), Error>,
    ) -> Result<(), Error> {
        poll_fn(|cx| self.with(cx, |inner, cx| inner.poll_ready(cx))).await?;
        self.locked(|inner| queue(&mut inner.conn))?;
        poll_fn(|cx| self.with(cx, |inner, cx| inner.poll_send_out(cx))).await
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), Error> {
        self.send(Message::text(text)).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: impl Into<bytes::Bytes>) -> Result<(), Error> {
        self.send(Message::Binary(data.into())).await
    }

    /// Sends a text or binary message as several frames of at most `fragment_size` bytes of
    /// payload each; see [`WebSocketStream::send_fragmented`](super::WebSocketStream::send_fragmented).
    pub async fn send_fragmented(
        &mut self,
        message: impl Into<Message>,
        fragment_size: usize,
    ) -> Result<(), Error> {
        let message = message.into();
        self.queue_and_write(|conn| conn.send_fragmented(&message, fragment_size))
            .await
    }

    /// Sends one part of a message whose size need not be known up front; see
    /// [`WebSocketStream::send_part`].
    pub async fn send_part<'a>(
        &mut self,
        part: impl Into<MessagePart<'a>>,
        last: bool,
    ) -> Result<(), Error> {
        let part = part.into();
        self.queue_and_write(|conn| conn.send_part(part, last))
            .await
    }

    /// Sends a ping (the reading half receives the pong).
    pub async fn ping(&mut self, data: impl Into<bytes::Bytes>) -> Result<(), Error> {
        self.send(Message::Ping(data.into())).await
    }

    /// Sends a close frame within the close timeout (the reading half then receives the
    /// peer's close, also within the close timeout). `frame: None` sends no status code (the
    /// server sees 1005); `Some(wsc::CloseFrame::new(wsc::CloseCode::NORMAL, ""))` sends
    /// 1000. A peer found gone by this write (it reset the connection) is not an error here:
    /// the reading half delivers what it sent before, then its close frame or
    /// [`Error::ConnectionReset`]. Once the reading half has reported the connection's end
    /// (a reset, an error), nothing can be sent: [`Error::ConnectionClosed`].
    /// (`SinkExt::close(&mut writer)` closes with no status code, as `close(None)` does.)
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.locked(|inner| {
            if inner.conn.can_send() {
                inner.queue_close(frame)?;
            }
            Ok::<_, Error>(())
        })?;
        poll_fn(|cx| self.with(cx, |inner, cx| inner.poll_close(cx))).await
    }
}

/// As the stream's `Sink`: a [`Message::Close`] given to `start_send` is flushed within the
/// close timeout.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWriter<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with(cx, |inner, cx| inner.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.locked(|inner| inner.start_send(item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with(cx, |inner, cx| inner.poll_close(cx))
    }
}

/// The halves of a stream's connection state.
pub(super) fn halves<S>(inner: Inner<S>) -> (WsReader<S>, WsWriter<S>) {
    let wakers = Arc::new(FanOut::default());
    let shared = Arc::new(Shared {
        inner: Mutex::new(inner),
        waker: Waker::from(wakers.clone()),
        wakers,
    });
    (
        WsReader {
            shared: shared.clone(),
        },
        WsWriter { shared },
    )
}
