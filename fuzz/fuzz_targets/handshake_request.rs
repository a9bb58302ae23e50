//! `handshake::parse_request` (server role) on arbitrary bytes, fed as a growing prefix. An
//! accepted request is answered with `accept_response`, which a client that sent that key and
//! offered those subprotocols must accept.
//!
//! Flags: bit 1 picks a small head limit (256 bytes instead of 4 KiB); bits 2-3 pick which
//! offered subprotocol the server chooses (3: none).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsc::proto::handshake::{
    accept_response, parse_request, ClientHandshake, ClientRequest, HandshakeError, Request,
};
use wsc_fuzz::Input;

fn summary(r: &Result<Option<(Request, usize)>, HandshakeError>) -> String {
    match r {
        Ok(None) => "pending".into(),
        Ok(Some((req, n))) => format!("ok {n} {req:?}"),
        Err(e) => format!("err {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::new(data);
    let max_size = if input.flags & 2 != 0 { 256 } else { 4096 };
    let mut buf = Vec::new();
    let mut outcome = Ok(None);
    for chunk in input.chunks() {
        buf.extend_from_slice(chunk);
        outcome = parse_request(&buf, max_size);
        if !matches!(outcome, Ok(None)) {
            break;
        }
    }
    assert_eq!(
        summary(&outcome),
        summary(&parse_request(&buf, max_size)),
        "parse_request is not a function of its input"
    );

    let (request, n) = match outcome {
        Ok(Some(accepted)) => accepted,
        Ok(None) => return,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(n > 0 && n <= buf.len() && n <= max_size);

    // Round trip: the server's 101 answer satisfies a client that sent this key and offer.
    let pick = usize::from((input.flags >> 2) & 3);
    let chosen = request.protocols.get(pick).map(String::as_str);
    let answer = accept_response(&request, chosen, &[]);
    let client = ClientRequest {
        host: "h".into(),
        protocols: request.protocols.clone(),
        ..Default::default()
    };
    // Offers that are not tokens cannot be sent by our client; nothing to check then.
    let Ok((mut hs, _)) = ClientHandshake::with_key(&client, &request.key, 1 << 16) else {
        return;
    };
    match hs.parse_response(&answer) {
        Ok(Some((resp, used))) => {
            assert_eq!(used, answer.len());
            assert_eq!(resp.protocol.as_deref(), chosen);
        }
        other => panic!("client refused the server's own answer: {other:?}\n{request:?}"),
    }
});
