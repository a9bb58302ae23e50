//! Benchmark: 10,000 concurrent idle WebSocket connections from one process to a local server,
//! wsc's async client side by side with tokio-tungstenite. Reports the time to open them all
//! and the client's resident memory per idle connection, and rewrites its section of
//! BENCHMARKS.md when `WSC_BENCH_REPORT` names that file.
//!
//! `cargo bench -p wsc --features tokio --bench connections`
//!
//! The file-descriptor limit is too low for both ends in one process, so the bench runs as
//! three kinds of process, all this binary:
//!
//! - the parent (no arguments): runs the measurements, alternating the clients, and prints the
//!   table of medians;
//! - `--server PORT-FILE`: wsc's async server role on 127.0.0.1 (one task per connection,
//!   plain ws://, compression declined), writes its port to PORT-FILE, and exits when its
//!   standard input closes; a fresh one serves each measurement;
//! - `--client KIND PORT`: opens the connections with one client and keeps each idle in its
//!   own task, waiting for a message; measures, and prints its figures as one line of JSON. A
//!   fresh process per measurement, so no client inherits another's allocator state.
//!
//! The kinds: `wsc` (compression off), `wsc-offer` (default options: permessage-deflate
//! offered, which the server declines) and `tungstenite` (tokio-tungstenite, default config)
//! open their connections from 256 opener tasks, each handing a connection to a new task once
//! it is open. `wsc-task` and `tungstenite-task` spawn one task per connection that waits for
//! its turn, connects and then idles, the other common way to write it: that task keeps the
//! size of the connecting future for the connection's whole life.
//!
//! Environment: `WSC_BENCH_CONNECTIONS` (default 10000), `WSC_BENCH_REPS` (default 3),
//! `WSC_BENCH_CLIENTS` (comma-separated kinds, default all five), `WSC_BENCH_HEAP=1` (the
//! client children print, on standard error, the heap blocks still live per connection by
//! size: where the memory of an idle connection goes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::poll_fn;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_core::Stream;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use wsc::server::Acceptor;
use wsc::tokio::{TokioStream, WebSocketStream};
use wsc::ClientBuilder;

/// Connections held open at once.
const DEFAULT_CONNECTIONS: usize = 10_000;
/// Measurements per client.
const DEFAULT_REPS: usize = 3;
/// Handshakes in flight at once, the same for every client.
const IN_FLIGHT: usize = 256;
/// The server's accept queue (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 4096;
/// Worker threads of each process's runtime.
const WORKERS: usize = 2;
/// Wait after the last handshake before reading the resident memory.
const SETTLE: Duration = Duration::from_secs(1);
/// A client child that has not finished by then is given up on.
const CLIENT_DEADLINE: Duration = Duration::from_secs(180);

/// The clients, in the order they alternate.
const KINDS: [&str; 5] = [
    "wsc",
    "wsc-offer",
    "tungstenite",
    "wsc-task",
    "tungstenite-task",
];

fn describe(kind: &str) -> String {
    let (client, in_task) = parse_kind(kind);
    let name = match client {
        Client::Wsc { offer: false } => "wsc::tokio, compression off",
        Client::Wsc { offer: true } => "wsc::tokio, default options (deflate offered, declined)",
        Client::Tungstenite => "tokio-tungstenite 0.29, default config",
    };
    if in_task {
        format!("{name}; connected inside the connection's task")
    } else {
        name.to_string()
    }
}

// ----- heap accounting -----

/// The system allocator, counting the bytes and blocks live (and, with `WSC_BENCH_HEAP=1`,
/// the blocks live per size class).
struct CountingAlloc;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static BY_SIZE_ON: AtomicBool = AtomicBool::new(false);
/// Live blocks by size class: 16-byte steps up to 4 KiB, then powers of two.
static BY_SIZE: [AtomicIsize; SIZE_CLASSES] = [const { AtomicIsize::new(0) }; SIZE_CLASSES];
const SIZE_CLASSES: usize = 256 + 48;

fn size_class(size: usize) -> usize {
    if size <= 4096 {
        size.div_ceil(16).saturating_sub(1).min(255)
    } else {
        256 + (usize::BITS - (size - 1).leading_zeros()) as usize - 13
    }
}

/// The largest size in a class, for printing.
fn class_limit(class: usize) -> usize {
    if class < 256 {
        (class + 1) * 16
    } else {
        1 << (class - 256 + 13)
    }
}

fn track(size: usize, delta: isize) {
    LIVE_BYTES.fetch_add(delta * size as isize, Ordering::Relaxed);
    LIVE_BLOCKS.fetch_add(delta, Ordering::Relaxed);
    if BY_SIZE_ON.load(Ordering::Relaxed) {
        BY_SIZE[size_class(size).min(SIZE_CLASSES - 1)].fetch_add(delta, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(layout.size(), -1);
            track(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn heap_snapshot() -> Vec<isize> {
    BY_SIZE.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

/// This process's resident memory, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmRSS value");
    kib * 1024
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ----- server process -----

fn serve(port_file: &Path) {
    // The parent closes our standard input when it is done with us (or dies).
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    runtime().block_on(async {
        // A deep accept queue: the default one overflows under a burst of handshakes, and a
        // dropped SYN costs the client a one-second retransmission.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1");
        let listener = socket.listen(LISTEN_BACKLOG).expect("listen");
        let port = listener.local_addr().expect("local address").port();
        let tmp = port_file.with_extension("tmp");
        std::fs::write(&tmp, port.to_string()).expect("write the port file");
        std::fs::rename(&tmp, port_file).expect("rename the port file");
        let acceptor = Arc::new(Acceptor::new().deflate(None));
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or the like: say so, and keep serving the others.
                    eprintln!("server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok((mut ws, _request)) = acceptor.accept_async(tcp).await else {
                    return;
                };
                drop(acceptor);
                // Idle until the client goes away; answer pings and closes on the way.
                while let Some(Ok(_)) = ws.recv().await {}
            });
        }
    });
}

// ----- client process -----

type TungStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The client library under test.
#[derive(Clone, Copy)]
enum Client {
    /// wsc's async client; `offer`: the default permessage-deflate offer (else compression off).
    Wsc {
        offer: bool,
    },
    Tungstenite,
}

/// A client kind: the library, and whether each connection is opened inside its own
/// long-lived task (`-task`) rather than by one of the opener tasks.
fn parse_kind(kind: &str) -> (Client, bool) {
    let (base, in_task) = match kind.strip_suffix("-task") {
        Some(base) => (base, true),
        None => (kind, false),
    };
    let client = match base {
        "wsc" => Client::Wsc { offer: false },
        "wsc-offer" => Client::Wsc { offer: true },
        "tungstenite" => Client::Tungstenite,
        other => {
            panic!("unknown client {other:?} (wsc, wsc-offer, tungstenite, with -task or not)")
        }
    };
    (client, in_task)
}

async fn open_wsc(url: &str, offer: bool) -> Result<WebSocketStream<TokioStream>, String> {
    let (ws, _response) = ClientBuilder::new(url)
        .compression(offer)
        .connect_async()
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

async fn open_tungstenite(url: &str) -> Result<TungStream, String> {
    let (ws, _response) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Puts an open connection in its own task, waiting for a message that never comes (the
/// usual `tokio::spawn(async move { while let Some(m) = ws.next().await { .. } })`).
fn idle_wsc(mut ws: WebSocketStream<TokioStream>) -> JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.recv().await {} })
}

fn idle_tungstenite(mut ws: TungStream) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(_)) = poll_fn(|cx| Pin::new(&mut ws).poll_next(cx)).await {}
    })
}

/// Handshakes finished so far, and the failures among them.
struct Progress {
    target: usize,
    done: AtomicUsize,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
    all_done: Notify,
}

impl Progress {
    fn finish(&self, result: Result<(), &String>) {
        if let Err(e) = result {
            self.errors.fetch_add(1, Ordering::Relaxed);
            self.first_error
                .lock()
                .unwrap()
                .get_or_insert_with(|| e.clone());
        }
        if self.done.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            self.all_done.notify_one();
        }
    }
}

/// Opener tasks: each opens connections one after another and hands each to its own idle
/// task; returns the idle tasks.
async fn opener(
    client: Client,
    url: Arc<str>,
    next: Arc<AtomicUsize>,
    progress: Arc<Progress>,
) -> Vec<JoinHandle<()>> {
    let mut idle = Vec::new();
    while next.fetch_add(1, Ordering::Relaxed) < progress.target {
        let task = match client {
            Client::Wsc { offer } => open_wsc(&url, offer).await.map(idle_wsc),
            Client::Tungstenite => open_tungstenite(&url).await.map(idle_tungstenite),
        };
        progress.finish(task.as_ref().map(|_| ()));
        idle.extend(task);
    }
    idle
}

/// One task per connection for its whole life: wait for a turn, connect, then idle. The
/// task's future is as large as its largest state, the connecting one, for as long as the
/// connection lives.
fn connection_task(
    client: Client,
    url: Arc<str>,
    turn: Arc<Semaphore>,
    progress: Arc<Progress>,
) -> JoinHandle<()> {
    match client {
        Client::Wsc { offer } => tokio::spawn(async move {
            let permit = turn.acquire_owned().await.expect("semaphore");
            let ws = open_wsc(&url, offer).await;
            drop((permit, url));
            progress.finish(ws.as_ref().map(|_| ()));
            drop(progress);
            if let Ok(mut ws) = ws {
                while let Some(Ok(_)) = ws.recv().await {}
            }
        }),
        Client::Tungstenite => tokio::spawn(async move {
            let permit = turn.acquire_owned().await.expect("semaphore");
            let ws = open_tungstenite(&url).await;
            drop((permit, url));
            progress.finish(ws.as_ref().map(|_| ()));
            drop(progress);
            if let Ok(mut ws) = ws {
                while let Some(Ok(_)) = poll_fn(|cx| Pin::new(&mut ws).poll_next(cx)).await {}
            }
        }),
    }
}

fn client(kind: &str, port: u16) {
    let n = env_usize("WSC_BENCH_CONNECTIONS", DEFAULT_CONNECTIONS).max(1);
    let (client, in_task) = parse_kind(kind);
    let heap_report = std::env::var_os("WSC_BENCH_HEAP").is_some_and(|v| v != "0");
    BY_SIZE_ON.store(heap_report, Ordering::Relaxed);
    let rt = runtime();
    // Start the worker threads (and their allocator arenas) before the first reading.
    rt.block_on(async {
        let warm: Vec<_> = (0..WORKERS * 4)
            .map(|_| tokio::spawn(async { tokio::task::yield_now().await }))
            .collect();
        for w in warm {
            let _ = w.await;
        }
    });
    let url: Arc<str> = format!("ws://127.0.0.1:{port}/").into();
    let result = rt.block_on(async move {
        // The harness's own per-connection memory (a join handle each) is in place before
        // the first reading.
        let mut idle: Vec<JoinHandle<()>> = Vec::with_capacity(n);
        let progress = Arc::new(Progress {
            target: n,
            done: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            all_done: Notify::new(),
        });
        let rss_before = rss();
        let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
        let blocks_before = LIVE_BLOCKS.load(Ordering::Relaxed);
        let sizes_before = heap_snapshot();
        let start = Instant::now();
        if in_task {
            let turn = Arc::new(Semaphore::new(IN_FLIGHT));
            for _ in 0..n {
                idle.push(connection_task(
                    client,
                    url.clone(),
                    turn.clone(),
                    progress.clone(),
                ));
            }
            progress.all_done.notified().await;
        } else {
            let next = Arc::new(AtomicUsize::new(0));
            let openers: Vec<_> = (0..IN_FLIGHT.min(n))
                .map(|_| tokio::spawn(opener(client, url.clone(), next.clone(), progress.clone())))
                .collect();
            for opener in openers {
                idle.extend(opener.await.expect("opener task"));
            }
        }
        let open_secs = start.elapsed().as_secs_f64();
        let errors = progress.errors.load(Ordering::Relaxed);
        let opened = n - errors;
        tokio::time::sleep(SETTLE).await;
        let rss_open = rss();
        let heap_open = LIVE_BYTES.load(Ordering::Relaxed);
        let blocks_open = LIVE_BLOCKS.load(Ordering::Relaxed);
        if heap_report {
            print_heap_by_size(kind, &sizes_before, &heap_snapshot(), opened);
        }
        // Close every connection: aborting a task drops its stream and so the socket.
        for task in &idle {
            task.abort();
        }
        for task in idle.iter_mut() {
            let _ = task.await;
        }
        // A task's memory goes with its last handle; keep the vector's own capacity, which
        // was there before the first reading.
        idle.clear();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss_closed = rss();
        let heap_closed = LIVE_BYTES.load(Ordering::Relaxed);
        let per = |bytes: f64| {
            if opened > 0 {
                bytes / opened as f64
            } else {
                0.0
            }
        };
        let first_error = progress.first_error.lock().unwrap().clone();
        json!({
            "kind": kind,
            "connections": opened,
            "errors": errors,
            "first_error": first_error,
            "open_secs": open_secs,
            "rss_before": rss_before,
            "rss_open": rss_open,
            "rss_closed": rss_closed,
            "rss_per_conn": per(rss_open as f64 - rss_before as f64),
            "heap_per_conn": per((heap_open - heap_before) as f64),
            "blocks_per_conn": per((blocks_open - blocks_before) as f64),
            "heap_left_after_close": heap_closed - heap_before,
        })
    });
    println!("{result}");
    let _ = std::io::stdout().flush();
    // Nothing is left to wait for: leave without tearing the runtime down.
    std::process::exit(0);
}

/// Prints the heap blocks that the open connections added, by size class, per connection.
fn print_heap_by_size(kind: &str, before: &[isize], after: &[isize], opened: usize) {
    let n = opened.max(1) as f64;
    eprintln!("heap blocks live per idle connection ({kind}), by size:");
    let mut total = 0.0;
    for (class, (a, b)) in after.iter().zip(before).enumerate() {
        let per = (a - b) as f64 / n;
        if per.abs() >= 0.01 {
            let lo = if class == 0 {
                1
            } else {
                class_limit(class - 1) + 1
            };
            eprintln!("  {lo:>7}..={:<7} B: {per:>6.2} blocks", class_limit(class));
            total += per;
        }
    }
    eprintln!("  total: {total:.2} blocks");
}

// ----- parent -----

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(exe: &Path, dir: &Path, seq: usize) -> Server {
        let port_file = dir.join(format!("server-{seq}.port"));
        let child = Command::new(exe)
            .arg("--server")
            .arg(&port_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server process");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if let Ok(port) = text.trim().parse() {
                    break port;
                }
            }
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_file(&port_file);
        Server { child, port }
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_client(exe: &Path, kind: &str, port: u16) -> Value {
    let mut child = Command::new(exe)
        .arg("--client")
        .arg(kind)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a client process");
    let stdout = child.stdout.take().expect("client stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
    });
    let line = match rx.recv_timeout(CLIENT_DEADLINE) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            None
        }
    };
    let status = child.wait().expect("wait for the client");
    let line = line.unwrap_or_else(|| panic!("client {kind} gave no figures ({status})"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("client {kind}: {e}: {line}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn parent() {
    let exe = std::env::current_exe().expect("the bench's own path");
    let n = env_usize("WSC_BENCH_CONNECTIONS", DEFAULT_CONNECTIONS);
    let reps = env_usize("WSC_BENCH_REPS", DEFAULT_REPS).max(1);
    let kinds: Vec<String> = match std::env::var("WSC_BENCH_CLIENTS") {
        Ok(list) => list.split(',').map(|k| k.trim().to_string()).collect(),
        Err(_) => KINDS.iter().map(|k| k.to_string()).collect(),
    };
    for kind in &kinds {
        parse_kind(kind);
    }
    let dir = std::env::temp_dir().join(format!("wsc-bench-connections-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut results: Vec<(String, Vec<Value>)> =
        kinds.iter().map(|k| (k.clone(), Vec::new())).collect();
    let mut seq = 0;
    for rep in 0..reps {
        for (kind, runs) in results.iter_mut() {
            seq += 1;
            // A fresh server per measurement: no teardown of the previous run under way.
            let server = Server::start(&exe, &dir, seq);
            let figures = run_client(&exe, kind, server.port);
            server.stop();
            eprintln!(
                "rep {}/{reps} {kind:<16} opened {} ({} errors) in {:.3} s, RSS {:.0} B/conn, heap {:.0} B/conn in {:.1} blocks, heap left after closing all {} B",
                rep + 1,
                figures["connections"],
                figures["errors"],
                figures["open_secs"].as_f64().unwrap_or(f64::NAN),
                figures["rss_per_conn"].as_f64().unwrap_or(f64::NAN),
                figures["heap_per_conn"].as_f64().unwrap_or(f64::NAN),
                figures["blocks_per_conn"].as_f64().unwrap_or(f64::NAN),
                figures["heap_left_after_close"],
            );
            if let Some(e) = figures["first_error"].as_str() {
                eprintln!("  first error: {e}");
            }
            runs.push(figures);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let mut report = format!(
        "| client ({n} connections, {IN_FLIGHT} handshakes in flight) | time to open all (median of {reps}) | handshakes/s | RSS per idle connection | heap per idle connection | heap blocks per connection |\n| --- | --- | --- | --- | --- | --- |\n"
    );
    for (kind, runs) in &results {
        let col = |key: &str| median(runs.iter().filter_map(|r| r[key].as_f64()).collect());
        let failed: u64 = runs.iter().filter_map(|r| r["errors"].as_u64()).sum();
        let open = col("open_secs");
        let opened = col("connections");
        report.push_str(&format!(
            "| {}{} | {:.3} s | {:.0} | {:.2} KiB | {:.2} KiB | {:.1} |\n",
            describe(kind),
            if failed > 0 {
                format!(" ({failed} failed)")
            } else {
                String::new()
            },
            open,
            opened / open,
            col("rss_per_conn") / 1024.0,
            col("heap_per_conn") / 1024.0,
            col("blocks_per_conn"),
        ));
    }
    print!("{report}");
    if let Ok(path) = std::env::var("WSC_BENCH_REPORT") {
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        let section = "## 10,000 idle connections\n";
        if let Some(at) = text.find(section) {
            let end = text[at + section.len()..]
                .find("\n## ")
                .map_or(text.len(), |e| at + section.len() + e + 1);
            text.replace_range(at..end, "");
        }
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push('\n');
        }
        text.push_str(&format!(
            "{section}\n`cargo bench -p wsc --features tokio --bench connections`: one client process \
             holds {n} idle connections to a wsc async server in another process (127.0.0.1, \
             ws://, the server declines compression), each connection in its own task waiting \
             for a message; at most {IN_FLIGHT} handshakes in flight; tokio multi-thread runtime \
             with {WORKERS} workers on both sides; each measurement in a fresh client process \
             and against a fresh server, the clients alternating. RSS per connection is the \
             growth of the client's VmRSS from before the first connect to {} s after the last \
             handshake, divided by the connections; heap is what the global allocator had live \
             for them (RSS adds malloc's own overhead and memory freed but kept). In the first \
             rows, opener tasks hand each open connection to a new task; in the rows \
             \"connected inside the connection's task\", one task per connection connects and \
             then idles, and keeps the size of the connecting future for as long as it lives.\n\n{report}\n",
            SETTLE.as_secs()
        ));
        std::fs::write(&path, text).expect("write the report");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--server") => serve(Path::new(args.get(1).expect("--server PORT-FILE"))),
        Some("--client") => {
            let kind = args.get(1).expect("--client KIND PORT");
            let port = args
                .get(2)
                .and_then(|p| p.parse().ok())
                .expect("--client KIND PORT");
            client(kind, port);
        }
        // `cargo bench` passes `--bench`; anything else runs the whole comparison.
        _ => parent(),
    }
    let _ = std::io::stdout().flush();
}
