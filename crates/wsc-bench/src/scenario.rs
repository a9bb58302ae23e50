//! The scenarios, written once for blocking clients and once for async ones (the same steps,
//! with `.await`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::impls::{err, AsyncClient, Kind, Opts, Result, SyncClient};
use crate::payload::{feed_message, header_len, tickers, tickers_total, CompressedFeed};
use crate::report::{percentile_us, rss, Report};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `/feed`: M server messages of N bytes, as fast as the client reads.
    Feed,
    /// `/echo`: one small text message in flight, round-trip latency.
    Echo,
    /// `/sink`: a 16 MiB binary message sent and echoed back.
    Large,
    /// `/close`: opening and closing handshakes, one connection after another.
    Connect,
    /// `/compressed`: a JSON ticker feed, every message compressed (permessage-deflate).
    Compressed,
    /// `/echo`: K idle connections, resident memory per connection (async clients only).
    Idle,
}

pub const SCENARIOS: [Scenario; 6] = [
    Scenario::Feed,
    Scenario::Echo,
    Scenario::Large,
    Scenario::Connect,
    Scenario::Compressed,
    Scenario::Idle,
];

impl Scenario {
    pub fn parse(s: &str) -> Option<Scenario> {
        SCENARIOS.into_iter().find(|sc| sc.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Feed => "feed",
            Scenario::Echo => "echo",
            Scenario::Large => "large",
            Scenario::Connect => "connect",
            Scenario::Compressed => "compressed",
            Scenario::Idle => "idle",
        }
    }

    /// Message size when `--size` is not given (None: the scenario has no fixed size).
    pub fn default_size(self) -> Option<usize> {
        match self {
            Scenario::Feed => Some(100),
            Scenario::Echo => Some(32),
            Scenario::Large => Some(16 << 20),
            _ => None,
        }
    }

    /// Count when `--count` is not given (each run well under 5 s on the project's machine).
    pub fn default_count(self, size: usize) -> u64 {
        match self {
            Scenario::Feed if size >= 4096 => 300_000,
            Scenario::Feed => 10_000_000,
            Scenario::Echo => 50_000,
            Scenario::Large => 20,
            Scenario::Connect => 5_000,
            Scenario::Compressed => 500_000,
            Scenario::Idle => 2_000,
        }
    }

    /// Warm-up iterations when `--warmup` is not given (not measured): round trips, connections,
    /// or, for the feeds, messages read before the clock starts (0: timed from the first byte).
    pub fn default_warmup(self) -> u64 {
        match self {
            Scenario::Echo => 1_000,
            Scenario::Large => 1,
            Scenario::Connect => 100,
            _ => 0,
        }
    }
}

/// One client run.
#[derive(Debug, Clone)]
pub struct Params {
    pub scenario: Scenario,
    pub addr: String,
    pub size: usize,
    pub count: u64,
    pub warmup: u64,
}

// ----- what the clients look at -----

/// What a streaming client notes of each message: it is text, its length, its last byte (so
/// the payload is read, not just its length).
fn look(kind: Kind, data: &[u8]) -> (bool, usize, u8) {
    (
        kind == Kind::Text,
        data.len(),
        data.last().copied().unwrap_or(0),
    )
}

/// The running totals of a streaming client: all messages, and those after the warm-up.
#[derive(Default)]
struct Tally {
    msgs: u64,
    bytes: u64,
    check: u64,
    /// `msgs` and `bytes` when the clock started.
    at_start: (u64, u64),
}

impl Tally {
    fn start_measuring(&mut self) {
        self.at_start = (self.msgs, self.bytes);
    }

    fn add(&mut self, seen: Option<(bool, usize, u8)>, expected: u64) -> Result<()> {
        match seen {
            Some((true, len, last)) => {
                self.msgs += 1;
                self.bytes += len as u64;
                self.check = self.check.wrapping_add(u64::from(last));
                Ok(())
            }
            Some((false, ..)) => Err(err(format!("message {} is not text", self.msgs + 1))),
            None => Err(err(format!(
                "the server closed after {} of {expected} messages",
                self.msgs
            ))),
        }
    }

    fn finish(self, secs: f64, expected_bytes: u64, r: &mut Report) -> Result<()> {
        black_box(self.check);
        if self.bytes != expected_bytes {
            return Err(err(format!(
                "received {} payload bytes, expected {expected_bytes}",
                self.bytes
            )));
        }
        let (msgs, bytes) = (self.msgs - self.at_start.0, self.bytes - self.at_start.1);
        r.secs = Some(secs);
        r.bytes = Some(bytes);
        r.msgs_per_sec = Some(msgs as f64 / secs);
        r.mb_per_sec = Some(bytes as f64 / secs / 1e6);
        Ok(())
    }
}

/// A streaming scenario's route, options, expected payload total, and the bytes the server
/// puts on the wire for the measured messages (computed as the server does, beforehand).
fn stream_setup(p: &Params) -> Result<(String, Opts, u64, u64)> {
    Ok(match p.scenario {
        Scenario::Compressed => {
            let feed = CompressedFeed::new()?;
            (
                format!("/compressed?count={}", p.count),
                Opts { compression: true },
                tickers_total(&tickers(), p.count),
                feed.wire_bytes(p.count) - feed.wire_bytes(p.warmup),
            )
        }
        _ => (
            format!("/feed?size={}&count={}", p.size, p.count),
            Opts::default(),
            p.count * p.size as u64,
            (p.count - p.warmup) * (header_len(p.size) + p.size) as u64,
        ),
    })
}

/// The route of `echo` and `large`.
pub fn echo_route(scenario: Scenario) -> &'static str {
    if scenario == Scenario::Large {
        "/sink"
    } else {
        "/echo"
    }
}

/// The payload of `echo` (text) and `large` (binary).
pub fn echo_payload(p: &Params) -> (Kind, Bytes) {
    match p.scenario {
        Scenario::Large => {
            let data: Vec<u8> = (0..p.size).map(|i| (i * 31 % 251) as u8).collect();
            (Kind::Binary, Bytes::from(data))
        }
        _ => (Kind::Text, Bytes::from(feed_message(0, p.size))),
    }
}

/// Checks an echoed message.
fn check_echo(seen: Option<(Kind, usize)>, kind: Kind, size: usize, i: u64) -> Result<()> {
    match seen {
        Some((k, len)) if k == kind && len == size => Ok(()),
        Some((k, len)) => Err(err(format!(
            "round trip {i}: got {k:?} of {len} bytes, sent {kind:?} of {size}"
        ))),
        None => Err(err(format!("round trip {i}: the server closed"))),
    }
}

/// Fills the report of a round-trip scenario.
pub fn round_trips(p: &Params, mut samples: Vec<Duration>, secs: f64, r: &mut Report) {
    samples.sort_unstable();
    r.secs = Some(secs);
    r.p50_us = percentile_us(&samples, 50.0);
    r.p99_us = percentile_us(&samples, 99.0);
    r.msgs_per_sec = Some(p.count as f64 / secs);
    if p.scenario == Scenario::Large {
        let bytes = 2 * p.count * p.size as u64;
        r.bytes = Some(bytes);
        r.mb_per_sec = Some(bytes as f64 / secs / 1e6);
    }
}

/// Fills the report of `connect`.
pub fn connects(p: &Params, mut samples: Vec<Duration>, secs: f64, r: &mut Report) {
    samples.sort_unstable();
    r.secs = Some(secs);
    r.conns_per_sec = Some(p.count as f64 / secs);
    r.p50_us = percentile_us(&samples, 50.0);
    r.p99_us = percentile_us(&samples, 99.0);
}

// ----- blocking -----

/// Runs a scenario with a blocking client.
pub fn run_sync<C: SyncClient>(p: &Params, r: &mut Report) -> Result<()> {
    match p.scenario {
        Scenario::Feed | Scenario::Compressed => stream_sync::<C>(p, r),
        Scenario::Echo | Scenario::Large => echo_sync::<C>(p, r),
        Scenario::Connect => connect_sync::<C>(p, r),
        Scenario::Idle => Err(err("idle is measured for async clients only")),
    }
}

fn stream_sync<C: SyncClient>(p: &Params, r: &mut Report) -> Result<()> {
    let (path, opts, expected_bytes, wire_bytes) = stream_setup(p)?;
    r.wire_bytes = Some(wire_bytes);
    let mut c = C::connect(&p.addr, &path, &opts)?;
    let mut start = Instant::now();
    let mut tally = Tally::default();
    for i in 0..p.count {
        if i == p.warmup {
            tally.start_measuring();
            start = Instant::now();
        }
        tally.add(c.recv(look)?, p.count)?;
    }
    let secs = start.elapsed().as_secs_f64();
    if c.recv(look)?.is_some() {
        return Err(err("a message after the last one"));
    }
    c.finish()?;
    tally.finish(secs, expected_bytes, r)
}

fn echo_sync<C: SyncClient>(p: &Params, r: &mut Report) -> Result<()> {
    let path = echo_route(p.scenario);
    let (kind, payload) = echo_payload(p);
    let mut c = C::connect(&p.addr, path, &Opts::default())?;
    let (samples, secs) = timed_rounds(p, |i| {
        c.send(kind, &payload)?;
        let seen = c.recv(|k, data| (k, data.len()))?;
        check_echo(seen, kind, p.size, i)
    })?;
    c.close()?;
    round_trips(p, samples, secs, r);
    Ok(())
}

fn connect_sync<C: SyncClient>(p: &Params, r: &mut Report) -> Result<()> {
    let (samples, secs) = timed_rounds(p, |_| {
        C::connect(&p.addr, "/close", &Opts::default())?.close()
    })?;
    connects(p, samples, secs, r);
    Ok(())
}

/// Runs `round` `p.warmup` times, then `p.count` times on the clock (blocking clients and
/// `raw`): the duration of each timed round, and the seconds of all of them.
pub fn timed_rounds(
    p: &Params,
    mut round: impl FnMut(u64) -> Result<()>,
) -> Result<(Vec<Duration>, f64)> {
    let mut samples = Vec::with_capacity(p.count as usize);
    let mut start = Instant::now();
    for i in 0..p.warmup + p.count {
        if i == p.warmup {
            start = Instant::now();
        }
        let t0 = Instant::now();
        round(i)?;
        if i >= p.warmup {
            samples.push(t0.elapsed());
        }
    }
    Ok((samples, start.elapsed().as_secs_f64()))
}

// ----- async -----

/// Runs a scenario with an async client, on a current-thread tokio runtime (one thread, as
/// the blocking clients have), inside a `LocalSet` (the idle tasks are spawned locally).
pub fn run_async<C: AsyncClient + 'static>(p: &Params, r: &mut Report) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        match p.scenario {
            Scenario::Feed | Scenario::Compressed => stream_async::<C>(p, r).await,
            Scenario::Echo | Scenario::Large => echo_async::<C>(p, r).await,
            Scenario::Connect => connect_async::<C>(p, r).await,
            Scenario::Idle => idle_async::<C>(p, r).await,
        }
    })
}

async fn stream_async<C: AsyncClient>(p: &Params, r: &mut Report) -> Result<()> {
    let (path, opts, expected_bytes, wire_bytes) = stream_setup(p)?;
    r.wire_bytes = Some(wire_bytes);
    let mut c = C::connect(&p.addr, &path, &opts).await?;
    let mut start = Instant::now();
    let mut tally = Tally::default();
    for i in 0..p.count {
        if i == p.warmup {
            tally.start_measuring();
            start = Instant::now();
        }
        tally.add(c.recv(look).await?, p.count)?;
    }
    let secs = start.elapsed().as_secs_f64();
    if c.recv(look).await?.is_some() {
        return Err(err("a message after the last one"));
    }
    c.finish().await?;
    tally.finish(secs, expected_bytes, r)
}

async fn echo_async<C: AsyncClient>(p: &Params, r: &mut Report) -> Result<()> {
    let path = echo_route(p.scenario);
    let (kind, payload) = echo_payload(p);
    let mut c = C::connect(&p.addr, path, &Opts::default()).await?;
    let (samples, secs) = timed_rounds_async(p, async |i| {
        c.send(kind, &payload).await?;
        let seen = c.recv(|k, data| (k, data.len())).await?;
        check_echo(seen, kind, p.size, i)
    })
    .await?;
    c.close().await?;
    round_trips(p, samples, secs, r);
    Ok(())
}

async fn connect_async<C: AsyncClient>(p: &Params, r: &mut Report) -> Result<()> {
    let (samples, secs) = timed_rounds_async(p, async |_| {
        C::connect(&p.addr, "/close", &Opts::default())
            .await?
            .close()
            .await
    })
    .await?;
    connects(p, samples, secs, r);
    Ok(())
}

/// [`timed_rounds`] for the async clients.
async fn timed_rounds_async(
    p: &Params,
    mut round: impl AsyncFnMut(u64) -> Result<()>,
) -> Result<(Vec<Duration>, f64)> {
    let mut samples = Vec::with_capacity(p.count as usize);
    let mut start = Instant::now();
    for i in 0..p.warmup + p.count {
        if i == p.warmup {
            start = Instant::now();
        }
        let t0 = Instant::now();
        round(i).await?;
        if i >= p.warmup {
            samples.push(t0.elapsed());
        }
    }
    Ok((samples, start.elapsed().as_secs_f64()))
}

/// Opens K connections to `/echo` one after another, each handed to its own task that waits
/// for a message (as an application would), and measures the growth of resident memory.
async fn idle_async<C: AsyncClient + 'static>(p: &Params, r: &mut Report) -> Result<()> {
    let opts = Opts::default();
    // One connection opened and closed first, so that what the runtime and the library set
    // up once (timers, the I/O driver's slabs, lazy statics) is in place before the reading.
    C::connect(&p.addr, "/echo", &opts).await?.close().await?;
    let mut tasks = Vec::with_capacity(p.count as usize);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = rss().ok_or_else(|| err("cannot read VmRSS"))?;
    let start = Instant::now();
    for _ in 0..p.count {
        let mut c = C::connect(&p.addr, "/echo", &opts).await?;
        tasks.push(tokio::task::spawn_local(async move {
            while let Ok(Some(())) = c.recv(|_, _| ()).await {}
        }));
    }
    let open_secs = start.elapsed().as_secs_f64();
    // Every task has been polled and is parked in its read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss().ok_or_else(|| err("cannot read VmRSS"))?;
    if let Some(done) = tasks.iter().position(|t| t.is_finished()) {
        return Err(err(format!("idle connection {done} ended early")));
    }
    r.rss_before = Some(before);
    r.rss_after = Some(after);
    r.bytes_per_conn = Some((after as f64 - before as f64) / p.count as f64);
    r.conns_per_sec = Some(p.count as f64 / open_secs);
    r.secs = Some(open_secs);
    r.notes = Some(
        "bytes_per_conn: VmRSS growth / K, each connection idle in its own task; \
         conns_per_sec: opening them, one at a time"
            .into(),
    );
    // The connections are dropped when the process exits.
    std::mem::forget(tasks);
    Ok(())
}
