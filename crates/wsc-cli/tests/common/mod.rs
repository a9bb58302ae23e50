//! What both CLI test files need: the binary, a deadline on every run, and reading its output.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The `wsc` binary under test.
pub const WSC: &str = env!("CARGO_BIN_EXE_wsc");

/// Waits for `child` to finish and collects its output, killing it after 20 s so that no
/// test can hang; `what` names the run in that failure.
pub fn finish(child: Child, what: &dyn std::fmt::Debug) -> Output {
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("wsc {what:?} did not finish in 20 s");
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the run exited with `code` (showing its stderr if not) and returns its
/// stderr, for the assertions on what it said.
#[track_caller]
pub fn exits_with(out: &Output, code: i32) -> String {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    err
}

/// Starts `wsc serve 127.0.0.1:0` with `flags` on a free port; returns it, the URL of its
/// first line (`ws://` or `wss://`, no trailing slash) and the rest of its stderr (a line per
/// connection).
pub fn spawn_serve(flags: &[&str]) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = Command::new(WSC)
        .args(["serve", "127.0.0.1:0"])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.contains("://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (child, url, err)
}
