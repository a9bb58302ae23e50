//! `ClientHandshake::parse_response` on arbitrary bytes, fed as a driver does: the parser is
//! called again with a growing prefix until it answers, then (at EOF) `take_refusal`.
//!
//! Flags: bit 0 offers permessage-deflate, bit 1 picks a small head limit (256 bytes instead of
//! 4 KiB), bit 2 offers no subprotocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsc::proto::deflate::DeflateConfig;
use wsc::proto::handshake::{ClientHandshake, ClientRequest, HandshakeError, Response};
use wsc_fuzz::Input;

/// The RFC 6455 sample key; its accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn handshake(flags: u8) -> ClientHandshake {
    let request = ClientRequest {
        host: "example.com".into(),
        path: "/chat".into(),
        protocols: if flags & 4 == 0 {
            vec!["chat".into(), "superchat".into()]
        } else {
            Vec::new()
        },
        deflate: (flags & 1 != 0).then(DeflateConfig::default),
        ..Default::default()
    };
    let max_size = if flags & 2 != 0 { 256 } else { 4096 };
    ClientHandshake::with_key(&request, KEY, max_size)
        .expect("fixed request is valid")
        .0
}

/// What an outcome looks like, for comparing two runs.
fn summary(r: &Result<Option<(Response, usize)>, HandshakeError>) -> String {
    match r {
        Ok(None) => "pending".into(),
        Ok(Some((resp, n))) => format!("ok {n} {resp:?}"),
        Err(e) => format!("err {e:?}"),
    }
}

fn check(result: &Result<Option<(Response, usize)>, HandshakeError>, buf: &[u8]) {
    match result {
        Ok(Some((resp, n))) => {
            assert!(*n > 0 && *n <= buf.len());
            assert_eq!(resp.status, 101);
        }
        Err(e) => {
            let _ = e.to_string();
            if let HandshakeError::Rejected(resp) = e {
                assert!(resp.body.len() <= wsc::proto::handshake::MAX_ERROR_BODY);
            }
        }
        Ok(None) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let mut hs = handshake(input.flags);
    let mut buf = Vec::new();
    let mut outcome = Ok(None);
    for chunk in input.chunks() {
        buf.extend_from_slice(chunk);
        outcome = hs.parse_response(&buf);
        check(&outcome, &buf);
        if !matches!(outcome, Ok(None)) {
            break;
        }
    }

    // Chunking must not change the answer: a fresh parser given the same bytes at once agrees.
    let mut fresh = handshake(input.flags);
    let once = fresh.parse_response(&buf);
    assert_eq!(
        summary(&outcome),
        summary(&once),
        "input split changed the outcome"
    );

    if matches!(outcome, Ok(None)) {
        // EOF: a driver asks for the refusal whose head arrived, if any.
        if let Some(e) = hs.take_refusal(&buf) {
            assert!(matches!(e, HandshakeError::Rejected(_)));
            let _ = e.to_string();
        }
    }
});
