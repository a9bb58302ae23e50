//! Keepalive: a ping every interval and a deadline for its pong, so that a dead peer (or a
//! dead path to it: a NAT that forgot the mapping, a cable pulled) is noticed within
//! interval + timeout instead of hours later by TCP. Bytes arriving while the pong is awaited
//! prove the peer alive too: a pong queued behind a big message cannot arrive before it, so
//! the wait ends a timeout after the last byte, not after the ping. So does our own output
//! going out while the ping waits behind it (the connection tells the clock): a ping queued
//! behind a big upload reaches the peer only once the upload has.
//!
//! Sans-I/O like the rest of the core: the driver passes the current time in and is told when
//! to call again; it never reads a clock here.

use std::time::{Duration, Instant};

/// Longer than any connection lives, and short enough to add to the clock: keepalive
/// settings beyond it count as it (`Duration::MAX` would overflow `Instant`).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How often to ping and how long to wait for the pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time from one ping to the next (counted from when a ping is sent).
    pub interval: Duration,
    /// How long a ping may wait for its pong, with nothing else arriving either, before the
    /// peer is declared dead (data arriving moves the deadline to a timeout after the last
    /// of it: the pong may be behind it; so does our output going out while the ping is
    /// queued behind it).
    pub timeout: Duration,
}

impl Keepalive {
    /// A ping every `interval`, each answered within `timeout` (an interval of zero pings again
    /// as soon as each pong is in). Either counts as at most a century, which the clock can
    /// count to.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Keepalive { interval, timeout }
    }
}

/// What the driver must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing until this time.
    Wait(Instant),
    /// Send a ping with this payload, then wait until the time.
    Ping([u8; 4], Instant),
    /// The pong did not come in time.
    Dead,
}

/// The keepalive clock of one connection.
#[derive(Debug, Clone)]
pub(crate) struct KeepaliveTimer {
    settings: Keepalive,
    next_ping: Instant,
    /// The deadline of the ping in flight, if one is.
    awaiting: Option<Instant>,
    /// When bytes last arrived while the ping in flight waits (as told to `poll`).
    last_heard: Option<Instant>,
    sent: u32,
    /// The payload of the last ping and when it was queued, until its pong is in.
    in_flight: Option<([u8; 4], Instant)>,
    /// The round trip of the last ping answered by its own pong.
    rtt: Option<Duration>,
}

impl KeepaliveTimer {
    /// Starts the clock: the first ping goes out one interval after `now`.
    pub(crate) fn new(settings: Keepalive, now: Instant) -> Self {
        // Capped here, where they are added to the clock, however the settings were built.
        let settings = Keepalive {
            interval: settings.interval.min(FOREVER),
            timeout: settings.timeout.min(FOREVER),
        };
        KeepaliveTimer {
            settings,
            next_ping: now + settings.interval,
            awaiting: None,
            last_heard: None,
            sent: 0,
            in_flight: None,
            rtt: None,
        }
    }

    pub(crate) fn settings(&self) -> Keepalive {
        self.settings
    }

    /// Whether the ping in flight has passed its deadline with nothing heard since it went
    /// out (`heard`: bytes arrived that [`KeepaliveTimer::poll`] has not been told of yet).
    pub(crate) fn overdue(&self, now: Instant, heard: bool) -> bool {
        let quiet_since = |t: Instant| now >= t + self.settings.timeout;
        !heard
            && self.awaiting.is_some_and(|deadline| now >= deadline)
            && self.last_heard.map_or(true, quiet_since)
    }

    /// Any pong proves the peer alive (some peers answer with an empty payload). The pong of
    /// our last ping, with `arrived` (when the bytes holding it were read), also gives the
    /// round trip.
    pub(crate) fn on_pong(&mut self, payload: &[u8], arrived: Option<Instant>) {
        self.awaiting = None;
        self.last_heard = None;
        if let (Some((ping, queued)), Some(arrived)) = (self.in_flight, arrived) {
            if payload == ping {
                self.rtt = Some(arrived.saturating_duration_since(queued));
                self.in_flight = None;
            }
        }
    }

    /// The round trip of the last ping its pong answered: from when the ping was queued to
    /// when the pong was read.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// What is due at `now`; `heard`: bytes arrived since the last call.
    pub(crate) fn poll(&mut self, now: Instant, heard: bool) -> Due {
        if let Some(deadline) = self.awaiting {
            if heard {
                self.last_heard = Some(now);
            }
            if now < deadline {
                return Due::Wait(deadline);
            }
            // Data kept coming: the peer is alive, and its pong is behind that data. The
            // wait ends a timeout after the last of it.
            let extended = self.last_heard.take().map(|t| t + self.settings.timeout);
            return match extended {
                Some(at) if at > now => {
                    self.awaiting = Some(at);
                    Due::Wait(at)
                }
                _ => Due::Dead,
            };
        }
        if now < self.next_ping {
            return Due::Wait(self.next_ping);
        }
        self.sent = self.sent.wrapping_add(1);
        let deadline = now + self.settings.timeout;
        self.awaiting = Some(deadline);
        self.last_heard = None;
        self.next_ping = now + self.settings.interval;
        self.in_flight = Some((self.sent.to_be_bytes(), now));
        Due::Ping(self.sent.to_be_bytes(), deadline)
    }

    /// When [`KeepaliveTimer::poll`] next has something to do.
    #[cfg(test)]
    pub(crate) fn next_wake(&self) -> Instant {
        self.awaiting.unwrap_or(self.next_ping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn pings_every_interval_while_pongs_come_back() {
        let t0 = Instant::now();
        let mut ka = KeepaliveTimer::new(Keepalive::new(secs(10), secs(3)), t0);
        assert_eq!(ka.poll(t0, false), Due::Wait(t0 + secs(10)));
        assert_eq!(
            ka.poll(t0 + secs(10), false),
            Due::Ping(1u32.to_be_bytes(), t0 + secs(13))
        );
        assert_eq!(ka.poll(t0 + secs(11), false), Due::Wait(t0 + secs(13)));
        ka.on_pong(&1u32.to_be_bytes(), None);
        assert_eq!(ka.next_wake(), t0 + secs(20));
        assert_eq!(ka.poll(t0 + secs(12), false), Due::Wait(t0 + secs(20)));
        assert_eq!(
            ka.poll(t0 + secs(21), false),
            Due::Ping(2u32.to_be_bytes(), t0 + secs(24))
        );
    }

    #[test]
    fn a_missing_pong_is_death_at_the_deadline_not_before() {
        let t0 = Instant::now();
        let mut ka = KeepaliveTimer::new(Keepalive::new(secs(10), secs(3)), t0);
        assert!(matches!(ka.poll(t0 + secs(10), false), Due::Ping(..)));
        assert_eq!(ka.poll(t0 + secs(12), false), Due::Wait(t0 + secs(13)));
        assert_eq!(ka.poll(t0 + secs(13), false), Due::Dead);
    }

    #[test]
    fn a_long_timeout_holds_back_the_next_ping() {
        let t0 = Instant::now();
        let mut ka = KeepaliveTimer::new(Keepalive::new(secs(1), secs(5)), t0);
        assert!(matches!(ka.poll(t0 + secs(1), false), Due::Ping(..)));
        // One ping in flight at a time: the interval passing does not send another.
        assert_eq!(ka.poll(t0 + secs(3), false), Due::Wait(t0 + secs(6)));
        ka.on_pong(&[], None);
        assert!(matches!(ka.poll(t0 + secs(3), false), Due::Ping(..)));
    }

    #[test]
    fn data_arriving_restarts_the_wait_for_the_pong() {
        let t0 = Instant::now();
        let mut ka = KeepaliveTimer::new(Keepalive::new(secs(10), secs(3)), t0);
        assert!(matches!(ka.poll(t0 + secs(10), true), Due::Ping(..)));
        // Bytes before the ping do not count; bytes after it move the deadline to a timeout
        // after the last of them.
        assert_eq!(ka.poll(t0 + secs(11), true), Due::Wait(t0 + secs(13)));
        assert!(!ka.overdue(t0 + secs(13), false));
        assert_eq!(ka.poll(t0 + secs(13), false), Due::Wait(t0 + secs(14)));
        // Then nothing at all for a whole timeout: dead.
        assert!(ka.overdue(t0 + secs(14), false));
        assert!(!ka.overdue(t0 + secs(14), true));
        assert_eq!(ka.poll(t0 + secs(14), false), Due::Dead);
    }

    #[test]
    fn the_round_trip_is_the_last_ping_answered_by_its_own_pong() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut ka = KeepaliveTimer::new(Keepalive::new(secs(10), secs(3)), t0);
        assert_eq!(ka.rtt(), None);
        assert!(matches!(ka.poll(t0 + secs(10), false), Due::Ping(..)));
        // Another payload (a pong the application asked for), or no time told: alive, but
        // no round trip.
        ka.on_pong(b"mine", Some(t0 + secs(10) + ms(5)));
        ka.on_pong(&1u32.to_be_bytes(), None);
        assert_eq!(ka.rtt(), None);
        assert!(matches!(ka.poll(t0 + secs(20), false), Due::Ping(..)));
        ka.on_pong(&2u32.to_be_bytes(), Some(t0 + secs(20) + ms(42)));
        assert_eq!(ka.rtt(), Some(ms(42)));
        // Kept until the next ping's own pong.
        assert!(matches!(ka.poll(t0 + secs(30), false), Due::Ping(..)));
        ka.on_pong(&2u32.to_be_bytes(), Some(t0 + secs(31)));
        assert_eq!(ka.rtt(), Some(ms(42)));
        ka.on_pong(&3u32.to_be_bytes(), Some(t0 + secs(30) + ms(7)));
        assert_eq!(ka.rtt(), Some(ms(7)));
    }
}
