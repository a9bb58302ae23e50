//! The async reconnecting client, on tokio: [`crate::reconnect`] for the async driver.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use ::tokio::time::Sleep;
use futures_core::{FusedStream, Stream};
use futures_sink::Sink;

use crate::client::ClientBuilder;
use crate::error::{Error, Phase};
use crate::proto::handshake::Response;
use crate::proto::{CloseFrame, Message, State};
use crate::reconnect::{ends_connection, Disconnect, Event, Plan, Reconnect};
use crate::tokio::{TokioStream, WebSocketStream};

/// An async client that reconnects after a drop and replays its subscriptions; see
/// [`crate::reconnect`] for the policy and the events. Its delays, downtimes and uptimes run
/// on tokio's clock: a test that pauses it (`tokio::time::pause`) sees the backoff in full.
/// It is also a [`Stream`] of the same events (`while let Some(event) = feed.next().await`),
/// which ends once reconnecting gives up or is closed.
///
/// ```no_run
/// # async fn run() -> Result<(), wsc::Error> {
/// use wsc::reconnect::{Event, Reconnect};
/// let mut feed = wsc::ClientBuilder::new("wss://stream.example.com/ws")
///     .connect_reconnecting_async(Reconnect::new())
///     .await?;
/// feed.subscribe(r#"{"op":"subscribe","channel":"ticker"}"#).await?;
/// while let Ok(event) = feed.next_event().await {
///     if let Event::Reconnected(r) = event {
///         eprintln!("gap of {:?}", r.downtime);
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Reconnecting {
    plan: Plan,
    ws: Option<WebSocketStream<TokioStream>>,
    /// The attempt in progress: kept when a call is cancelled, so that the next call goes on
    /// with it rather than starting another (a `select!` whose timer is shorter than a slow
    /// handshake would otherwise open connection after connection, none of them finished).
    /// In a mutex only so that the client stays `Sync` (it is reached through `&mut self`).
    attempt: Option<Mutex<Attempt>>,
    /// The opening handshake's response of the connection in `ws`.
    response: Option<Response>,
    /// The timer until the next attempt, kept between polls (reset for each attempt).
    wait: Option<Pin<Box<Sleep>>>,
}

/// One reconnect attempt: connect and handshake.
type Attempt =
    Pin<Box<dyn Future<Output = Result<(WebSocketStream<TokioStream>, Response), Error>> + Send>>;

impl fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("plan", &self.plan)
            .field("ws", &self.ws)
            .field("attempting", &self.attempt.is_some())
            .finish()
    }
}

impl ClientBuilder {
    /// Connects on tokio, and reconnects by `policy` whenever the connection drops. The
    /// first connection is not retried, its failure returned at once, unless the policy says
    /// so ([`Reconnect::retry_first_connect`]).
    pub async fn connect_reconnecting_async(
        self,
        policy: Reconnect,
    ) -> Result<Reconnecting, Error> {
        let (plan, ws, response) = match self.clone().connect_async().await {
            Ok((ws, response)) => (Plan::new(self, policy, now()), Some(ws), Some(response)),
            Err(e) => (Plan::first_failed(self, policy, e, now())?, None, None),
        };
        Ok(Reconnecting {
            plan,
            ws,
            attempt: None,
            response,
            wait: None,
        })
    }
}

impl Reconnecting {
    /// The next message, or a drop or reconnect. Returns an error when reconnecting gives
    /// up (the last attempt's error), after [`Reconnecting::close`]
    /// ([`Error::ConnectionClosed`]), and for a read timeout (the connection stays up). When
    /// connections keep dropping before they are stable, the drop that reaches
    /// `max_attempts` is the last event ([`Reconnecting::has_given_up`]);
    /// [`Error::GaveUp`] follows, at every call.
    ///
    /// Cancellation safe: cancelled while connected, nothing is lost; cancelled while the
    /// server's close is wound up, the next call finishes it; cancelled between connections,
    /// the next call waits for the same attempt, due at the same time (a `select!` with a
    /// shorter timer does not put the reconnect off); cancelled during an attempt, the next
    /// call goes on with that attempt. Unlike the blocking client's, the wait between
    /// connections is not cut short by the read timeout: to look at a stop flag while it
    /// lasts, race this call against a timer.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        poll_fn(|cx| self.poll_next_event(cx)).await
    }

    /// `next_event` as a poll, for it and for the [`Stream`]: everything it waits on (the
    /// connection, the timer until the next attempt, the attempt) is kept in `self`, so a
    /// poll that returns `Pending` loses nothing.
    fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, Error>> {
        if let Some(ws) = &mut self.ws {
            // Once the server's close is in (state `Closed`), the connection is being wound
            // up: a call cancelled meanwhile finishes that on the next one, and the frame is
            // kept by the connection.
            if ws.connection().state() != State::Closed {
                match ready!(Pin::new(&mut *ws).poll_next(cx)) {
                    Some(Ok(Message::Close(_))) => {}
                    Some(Ok(message)) => {
                        self.plan.heard |= message.is_data();
                        return Poll::Ready(Ok(Event::Message(message)));
                    }
                    Some(Err(e)) if !ends_connection(&e) => return Poll::Ready(Err(e)),
                    Some(Err(e)) => {
                        self.ws = None;
                        return Poll::Ready(Ok(self.plan.dropped(Disconnect::Failed(e), now())));
                    }
                    None => {
                        self.ws = None;
                        let cause = Disconnect::Failed(Error::ConnectionClosed);
                        return Poll::Ready(Ok(self.plan.dropped(cause, now())));
                    }
                }
            }
            // Let the driver send the close reply and wait (bounded by the close timeout)
            // for the server to close TCP, as the blocking client does.
            while ready!(Pin::new(&mut *ws).poll_next(cx)).is_some() {}
            let frame = ws.connection().peer_close().cloned();
            self.ws = None;
            return Poll::Ready(Ok(self.plan.dropped(Disconnect::Closed(frame), now())));
        }
        if let Some(answer) = self.plan.before_attempt() {
            return Poll::Ready(answer);
        }
        if self.attempt.is_none() {
            let due = ::tokio::time::Instant::from_std(self.plan.retry_at(now()));
            let wait = self
                .wait
                .get_or_insert_with(|| Box::pin(::tokio::time::sleep_until(due)));
            if wait.deadline() != due {
                wait.as_mut().reset(due);
            }
            ready!(wait.as_mut().poll(cx));
            self.attempt = Some(Mutex::new(self.open()));
        }
        let Some(attempt) = self.attempt.as_mut() else {
            unreachable!("started above")
        };
        let attempt = attempt.get_mut().unwrap_or_else(|e| e.into_inner());
        let opened = ready!(attempt.as_mut().poll(cx));
        self.attempt = None;
        Poll::Ready(
            match opened.and_then(|(ws, response)| self.replay(ws, response)) {
                Ok(()) => Ok(self.plan.reconnected(now())),
                Err(e) => self.plan.attempt_failed(e, now()),
            },
        )
    }

    /// Queues the subscriptions on the new connection, all at once (no await: a cancelled
    /// call cannot leave a replay half done), and writes what the socket takes now. The rest
    /// goes out with the reads, under their bounds (keepalive, the read timeout), so that a
    /// server that takes none of it cannot hold `next_event`.
    fn replay(
        &mut self,
        mut ws: WebSocketStream<TokioStream>,
        response: Response,
    ) -> Result<(), Error> {
        for message in &self.plan.subscriptions {
            ws.queue(message.clone())?;
        }
        ws.write_what_fits()?;
        self.ws = Some(ws);
        self.response = Some(response);
        Ok(())
    }

    /// Whether reconnecting gave up (see [`crate::Reconnecting::has_given_up`]).
    pub fn has_given_up(&self) -> bool {
        self.plan.gave_up
    }

    /// An attempt: opens a connection (the subscriptions follow in `replay`).
    fn open(&self) -> Attempt {
        let builder = self.plan.builder.clone();
        Box::pin(async move { builder.connect_async().await })
    }

    /// Sends a message on the current connection: [`Error::NotConnected`] between
    /// connections (it is not queued: what made sense before a gap may not after it),
    /// [`Error::ConnectionClosed`] after [`Reconnecting::close`], [`Error::GaveUp`] after
    /// giving up.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        match &mut self.ws {
            Some(ws) => ws.send(message).await,
            None => Err(self.plan.unconnected()),
        }
    }

    /// Sends a message now (if connected) and again after every reconnect. Once it is in
    /// the list, a connection found dead while sending it is no error of `subscribe`:
    /// `next_event` reports the drop, and the message goes out after the reconnect. A close
    /// frame, or a ping or pong over 125 bytes, is refused ([`Error::InvalidInput`]) and not
    /// added (see [`crate::Reconnecting::subscribe`]).
    ///
    /// The message is queued even behind output the server has not taken yet, at once: a
    /// `subscribe` cancelled while it waits to be written still sends it. [`Error::Timeout`]
    /// with [`Phase::Write`] (the write timeout) means it waits in the queue, as for the
    /// blocking client.
    pub async fn subscribe(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        self.plan.subscribe(&message)?;
        if let Some(ws) = &mut self.ws {
            // Another error means the connection is gone: the next read reports it.
            if ws.queue(message).is_ok() {
                let written = poll_fn(|cx| Pin::new(&mut *ws).poll_flush(cx)).await;
                if let Err(e @ Error::Timeout(Phase::Write)) = written {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The builder the next attempts connect with, to change between connections (see
    /// [`crate::Reconnecting::builder_mut`]). An attempt already begun (by a `next_event`
    /// that was cancelled) goes on with the builder it began with.
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
    /// for a connection that is up but no longer of use, such as a feed gone silent. As
    /// [`Reconnecting::reconnect`](crate::reconnect::Reconnecting::reconnect): the server's
    /// answer is waited for within the close timeout, the drop's [`Event::Disconnected`]
    /// ([`Disconnect::Replaced`]) is returned (or [`Disconnect::Closed`], when the server's
    /// close had come in already: a `next_event` cancelled while it wound the connection up),
    /// `Ok(None)` when no connection is open, and [`Error::InvalidInput`] for a frame that
    /// cannot be sent. Cancelled while it waits for the server's answer, the connection is
    /// dropped and the reconnect goes on all the same with the next
    /// [`next_event`](Self::next_event).
    pub async fn reconnect(&mut self, frame: Option<CloseFrame>) -> Result<Option<Event>, Error> {
        let Some(ws) = &self.ws else {
            return Ok(None);
        };
        if let Some(frame) = &frame {
            frame.check_sendable()?;
        }
        let cause = match ws.connection().state() {
            State::Closed => Disconnect::Closed(ws.connection().peer_close().cloned()),
            _ => Disconnect::Replaced(frame.clone()),
        };
        // Counted now, so that a cancelled wait below leaves a reconnect under way, not a
        // client with neither a connection nor an attempt.
        let event = self.plan.dropped(cause, now());
        if let Some(mut ws) = self.ws.take() {
            // Whatever the server answers, or if it answers nothing, this connection is over
            // (after the server's close, this only winds it up).
            let _ = ws.close(frame).await;
        }
        Ok(Some(event))
    }

    /// Closes the connection and stops reconnecting; returns the server's close frame.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<Option<CloseFrame>, Error> {
        self.plan.stopped = true;
        self.attempt = None;
        // After the server's close (a `next_event` cancelled while winding it up), this
        // winds the connection up and returns that close.
        match self.ws.take() {
            Some(mut ws) => ws.close(frame).await,
            None => Ok(None),
        }
    }

    /// The current connection, if one is open.
    pub fn get_ref(&self) -> Option<&WebSocketStream<TokioStream>> {
        self.ws.as_ref()
    }

    /// The current connection, if one is open.
    pub fn get_mut(&mut self) -> Option<&mut WebSocketStream<TokioStream>> {
        self.ws.as_mut()
    }

    /// The opening handshake's response of the current connection (its headers, the
    /// subprotocol the server chose), if one is open: each reconnect has its own.
    pub fn response(&self) -> Option<&Response> {
        self.ws.as_ref().and(self.response.as_ref())
    }
}

/// The events of [`Reconnecting::next_event`] as a stream, for `StreamExt` and `select!`:
/// `while let Some(event) = feed.next().await`. Its items are those of `next_event`, errors
/// included (a read timeout is one, and the stream goes on after it). Once reconnecting
/// gives up, the last item is [`Error::GaveUp`] (after the last attempt's error, or the
/// last drop); once [`Reconnecting::close`] stopped it, the stream simply ends.
impl Stream for Reconnecting {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ws.is_none() {
            if let Some(last) = this.plan.last_item() {
                return Poll::Ready(last);
            }
        }
        this.poll_next_event(cx).map(Some)
    }
}

impl FusedStream for Reconnecting {
    fn is_terminated(&self) -> bool {
        self.ws.is_none() && self.plan.events_over()
    }
}

/// Now on tokio's clock (which a test may pause), as the plan's times are kept.
fn now() -> std::time::Instant {
    ::tokio::time::Instant::now().into_std()
}
