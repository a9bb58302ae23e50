//! `wsc serve --broadcast`'s hub: each client's inbox of the messages published to all,
//! bounded in bytes. A client that reads too slowly (or not at all) costs the server at
//! most [`INBOX_LIMIT`] and is dropped with a reason, instead of missing messages silently
//! or making the server hold every message for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};
use wsc::Message;

/// The most a client's inbox holds (payload bytes, and [`MESSAGE_COST`] for each message)
/// before the client counts as lagging. A single message bigger than that still reaches a
/// client that has nothing waiting.
pub const INBOX_LIMIT: usize = 16 << 20;

/// What a queued message costs beside its payload (the `Message` and its place in the
/// channel): empty messages must not queue for free.
const MESSAGE_COST: usize = 64;

/// Every joined client's inbox.
#[derive(Default)]
pub struct Hub {
    inboxes: Mutex<HashMap<u64, Slot>>,
}

/// The hub's side of one inbox.
struct Slot {
    tx: mpsc::UnboundedSender<Message>,
    shared: Arc<Shared>,
}

/// What the hub and the inbox's owner both see.
#[derive(Default)]
struct Shared {
    /// Payload bytes published to the inbox and not yet taken.
    queued: AtomicUsize,
    lagged: AtomicBool,
    /// Wakes the owner once it is dropped for lagging.
    lag: Notify,
}

impl Hub {
    /// Adds client `id`'s inbox: it gets every message published from now on.
    pub fn join(self: &Arc<Self>, id: u64) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        self.lock().insert(
            id,
            Slot {
                tx,
                shared: shared.clone(),
            },
        );
        Inbox {
            id,
            rx,
            shared,
            hub: self.clone(),
        }
    }

    /// Puts `message` in every inbox, but for those it would take past [`INBOX_LIMIT`]:
    /// those clients lag, and leave the hub (what their inbox holds is still theirs).
    pub fn publish(&self, message: &Message) {
        let len = cost(message);
        self.lock().retain(|_, slot| {
            let queued = slot.shared.queued.load(Ordering::Acquire);
            if queued > 0 && queued.saturating_add(len) > INBOX_LIMIT {
                slot.shared.lagged.store(true, Ordering::Release);
                slot.shared.lag.notify_one();
                return false;
            }
            slot.shared.queued.fetch_add(len, Ordering::AcqRel);
            // (The inbox's owner may be gone: its `Drop` removes the slot next.)
            let _ = slot.tx.send(message.clone());
            true
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.inboxes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One client's inbox; leaves the hub when dropped.
pub struct Inbox {
    id: u64,
    rx: mpsc::UnboundedReceiver<Message>,
    shared: Arc<Shared>,
    hub: Arc<Hub>,
}

impl Inbox {
    /// The next message published; `None` once the inbox is empty and out of the hub
    /// (dropped for lagging: see [`Inbox::has_lagged`]).
    pub async fn recv(&mut self) -> Option<Message> {
        let message = self.rx.recv().await?;
        self.taken(&message);
        Some(message)
    }

    /// A message already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Message> {
        let message = self.rx.try_recv().ok()?;
        self.taken(&message);
        Some(message)
    }

    fn taken(&self, message: &Message) {
        self.shared
            .queued
            .fetch_sub(cost(message), Ordering::AcqRel);
    }

    /// Whether the client fell more than [`INBOX_LIMIT`] behind and was dropped from the
    /// hub.
    pub fn has_lagged(&self) -> bool {
        self.shared.lagged.load(Ordering::Acquire)
    }

    /// Resolves once the client is dropped for lagging.
    pub async fn lagged(&self) {
        let notified = self.shared.lag.notified();
        if self.has_lagged() {
            return;
        }
        notified.await;
    }
}

/// What `message` counts for against [`INBOX_LIMIT`].
fn cost(message: &Message) -> usize {
    message.len().saturating_add(MESSAGE_COST)
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.hub.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_inbox_gets_every_message_in_order() {
        let hub = Arc::new(Hub::default());
        let (mut a, mut b) = (hub.join(1), hub.join(2));
        for i in 0..3 {
            hub.publish(&Message::text(format!("m{i}")));
        }
        for inbox in [&mut a, &mut b] {
            for i in 0..3 {
                assert_eq!(inbox.recv().await, Some(Message::text(format!("m{i}"))));
            }
            assert!(inbox.try_recv().is_none());
        }
        drop(a);
        assert_eq!(hub.lock().len(), 1);
    }

    #[tokio::test]
    async fn a_client_that_falls_too_far_behind_lags_and_leaves_the_hub() {
        let hub = Arc::new(Hub::default());
        let (mut slow, mut fast) = (hub.join(1), hub.join(2));
        let chunk = Message::binary(vec![0u8; (1 << 20) - MESSAGE_COST]);
        for _ in 0..16 {
            hub.publish(&chunk);
            assert!(fast.recv().await.is_some());
        }
        assert!(!slow.has_lagged());
        // The 17th MiB is one too many for the one that took none.
        hub.publish(&chunk);
        assert!(slow.has_lagged());
        slow.lagged().await;
        assert!(fast.recv().await.is_some());
        // What it had is still its own; then nothing more comes.
        for _ in 0..16 {
            assert!(slow.recv().await.is_some());
        }
        assert!(slow.recv().await.is_none());
        hub.publish(&chunk);
        assert!(fast.recv().await.is_some());
        assert_eq!(hub.lock().len(), 1);
    }

    #[tokio::test]
    async fn empty_messages_count_against_the_limit_too() {
        let hub = Arc::new(Hub::default());
        let slow = hub.join(1);
        let empty = Message::text("");
        let mut published = 0;
        while !slow.has_lagged() {
            hub.publish(&empty);
            published += 1;
            assert!(published <= INBOX_LIMIT / MESSAGE_COST + 1, "{published}");
        }
    }

    #[tokio::test]
    async fn a_message_bigger_than_the_limit_still_reaches_an_idle_client() {
        let hub = Arc::new(Hub::default());
        let mut inbox = hub.join(1);
        hub.publish(&Message::binary(vec![0u8; INBOX_LIMIT + 1]));
        assert_eq!(inbox.recv().await.map(|m| m.len()), Some(INBOX_LIMIT + 1));
        assert!(!inbox.has_lagged());
    }
}
