//! The async reconnecting client, on tokio: [`crate::reconnect`] for the async driver.

use std::time::Instant;

use crate::client::ClientBuilder;
use crate::error::Error;
use crate::proto::{CloseFrame, Message};
use crate::reconnect::{ends_connection, Disconnect, Event, Plan, Reconnect};
use crate::tokio::{TokioStream, WebSocketStream};

/// An async client that reconnects after a drop and replays its subscriptions; see
/// [`crate::reconnect`] for the policy and the events.
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
#[derive(Debug)]
pub struct Reconnecting {
    plan: Plan,
    ws: Option<WebSocketStream<TokioStream>>,
}

impl ClientBuilder {
    /// Connects on tokio, and reconnects by `policy` whenever the connection drops. The
    /// first connection is not retried: its failure is returned at once.
    pub async fn connect_reconnecting_async(
        self,
        policy: Reconnect,
    ) -> Result<Reconnecting, Error> {
        let (ws, _) = self.clone().connect_async().await?;
        Ok(Reconnecting {
            plan: Plan::new(self, policy),
            ws: Some(ws),
        })
    }
}

impl Reconnecting {
    /// The next message, or a drop or reconnect. Returns an error when reconnecting gives
    /// up (the last attempt's error), after [`Reconnecting::close`]
    /// ([`Error::ConnectionClosed`]), and for a read timeout (the connection stays up).
    ///
    /// Cancellation safe while connected; cancelled during a reconnect, the attempt in
    /// progress is abandoned and the next call carries on with the same backoff.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        if let Some(ws) = &mut self.ws {
            return match ws.recv().await {
                Some(Ok(Message::Close(frame))) => {
                    // Let the driver send the close reply and wait (bounded by the close
                    // timeout) for the server to close TCP, as the blocking client does.
                    while ws.recv().await.is_some() {}
                    self.ws = None;
                    Ok(self.plan.dropped(Disconnect::Closed(frame)))
                }
                Some(Ok(message)) => Ok(Event::Message(message)),
                Some(Err(e)) if !ends_connection(&e) => Err(e),
                Some(Err(e)) => {
                    self.ws = None;
                    Ok(self.plan.dropped(Disconnect::Failed(e)))
                }
                None => {
                    self.ws = None;
                    Ok(self
                        .plan
                        .dropped(Disconnect::Failed(Error::ConnectionClosed)))
                }
            };
        }
        if self.plan.stopped {
            return Err(Error::ConnectionClosed);
        }
        if self.plan.down_since.is_none() {
            self.plan.down_since = Some(Instant::now());
        }
        loop {
            ::tokio::time::sleep(self.plan.next_delay()).await;
            match self.open().await {
                Ok(ws) => {
                    self.ws = Some(ws);
                    return Ok(self.plan.reconnected());
                }
                Err(e) => self.plan.attempt_failed(e)?,
            }
        }
    }

    /// Whether reconnecting gave up (see [`crate::Reconnecting::has_given_up`]).
    pub fn has_given_up(&self) -> bool {
        self.plan.gave_up
    }

    /// Opens a connection and sends the subscriptions.
    async fn open(&self) -> Result<WebSocketStream<TokioStream>, Error> {
        let (mut ws, _) = self.plan.builder.clone().connect_async().await?;
        for message in &self.plan.subscriptions {
            ws.send(message.clone()).await?;
        }
        Ok(ws)
    }

    /// Sends a message on the current connection ([`Error::ConnectionClosed`] while
    /// reconnecting: it is not queued).
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        match &mut self.ws {
            Some(ws) => ws.send(message).await,
            None => Err(Error::ConnectionClosed),
        }
    }

    /// Sends a message now (if connected) and again after every reconnect.
    pub async fn subscribe(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        self.plan.subscriptions.push(message.clone());
        match &mut self.ws {
            Some(ws) => ws.send(message).await,
            None => Ok(()),
        }
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

    /// Closes the connection and stops reconnecting; returns the server's close frame.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<Option<CloseFrame>, Error> {
        self.plan.stopped = true;
        match self.ws.take() {
            Some(mut ws) => ws.close(frame).await,
            None => Ok(None),
        }
    }

    /// The current connection, if one is open.
    pub fn get_mut(&mut self) -> Option<&mut WebSocketStream<TokioStream>> {
        self.ws.as_mut()
    }
}
