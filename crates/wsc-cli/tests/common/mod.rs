//! What both CLI test files need: the binary, a deadline on every run, and reading its output.

#![allow(dead_code)]

use std::process::{Child, Command, Output};
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
