//! Starting third-party WebSocket servers (Python `websockets`, Node `ws`) for tests.
//!
//! Shared by the test crates with `#[path = ".../tests/peers/spawn.rs"] mod peers;`.
//! scripts/test.sh installs the peers: Python packages into `.venv` (or `$WSC_VENV`), the
//! `ws` package into `target/node-peers` (or `$WSC_NODE_PATH`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

/// A child process killed when dropped, however the test ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running peer: its URL and its JSON event lines.
pub struct Peer {
    pub proc: Proc,
    pub url: String,
    pub events: mpsc::Receiver<Value>,
}

impl Peer {
    /// The next event of the given kind (`headers`, `closed`).
    pub fn event(&self, kind: &str) -> Value {
        loop {
            let v = self
                .events
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no {kind:?} event from the peer"));
            if v["event"] == kind {
                return v;
            }
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The project's Python with `websockets`.
pub fn python() -> PathBuf {
    // Relative paths are relative to the repository root, as in scripts/test.sh.
    let venv = root().join(std::env::var_os("WSC_VENV").unwrap_or_else(|| ".venv".into()));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} not found: run scripts/test.sh once (it creates the venv with websockets)",
        py.display()
    );
    py
}

/// Starts a peer command that prints `LISTENING <port>` and then JSON lines.
fn start(mut command: Command) -> Peer {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start the peer");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("peer output");
    let port = line
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("peer said {line:?}"))
        .trim()
        .to_string();
    let (tx, events) = mpsc::channel();
    thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    Peer {
        proc: Proc(child),
        url: format!("ws://127.0.0.1:{port}"),
        events,
    }
}

/// Python `websockets` echo server with the given options (see ws_server.py).
pub fn python_server(args: &[&str]) -> Peer {
    let mut command = Command::new(python());
    command
        .arg(root().join("tests/peers/ws_server.py"))
        .args(args);
    start(command)
}

/// Node `ws` echo server with `perMessageDeflate` options (JSON), or `None` if Node.js is not
/// installed on this machine (then the caller skips, saying so).
pub fn node_server(per_message_deflate: &str) -> Option<Peer> {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED: node is not installed; the Node `ws` interop test did not run");
        return None;
    }
    let node_path = root().join(
        std::env::var_os("WSC_NODE_PATH")
            .unwrap_or_else(|| "target/node-peers/node_modules".into()),
    );
    assert!(
        node_path.join("ws").exists(),
        "{} has no `ws`: run scripts/test.sh once (npm install ws)",
        node_path.display()
    );
    let mut command = Command::new("node");
    command
        .env("NODE_PATH", node_path)
        .arg(root().join("tests/peers/ws_server.cjs"))
        .arg(per_message_deflate);
    Some(start(command))
}
