//! Interop with third-party servers on loopback: Python `websockets` and Node `ws`, with
//! permessage-deflate on and off, with and without context takeover, and with reduced window
//! bits. The peers echo; every message must come back intact. Without the `deflate` feature,
//! the uncompressed cases run.

use std::time::Duration;

#[cfg(feature = "deflate")]
use wsc::proto::deflate::{DeflateConfig, DeflateParams};
use wsc::{ClientBuilder, CloseFrame, MaybeTlsStream, Message, WebSocket};

#[path = "../../../tests/peers/spawn.rs"]
mod peers;

/// A feed-like workload: repetitive JSON (compresses well), a big binary message, an empty
/// text and a non-ASCII text.
fn workload() -> Vec<Message> {
    let mut messages: Vec<Message> = (0..40)
        .map(|i| {
            Message::text(format!(
                r#"{{"type":"tick","symbol":"BTC-USD","seq":{i},"price":{}.25}}"#,
                64000 + i
            ))
        })
        .collect();
    messages.push(Message::binary(
        (0..300_000u32).map(|i| (i % 7) as u8).collect::<Vec<u8>>(),
    ));
    messages.push(Message::text(""));
    messages.push(Message::text("κόσμε ✓"));
    messages
}

/// Connects with `deflate`, echoes the workload, closes; returns the negotiated parameters.
#[cfg(feature = "deflate")]
fn echo_all(peer: &peers::Peer, deflate: Option<DeflateConfig>) -> Option<DeflateParams> {
    echo_all_seen(peer, deflate).0
}

/// Like `echo_all`, also returning what the server saw of the handshake.
#[cfg(feature = "deflate")]
fn echo_all_seen(
    peer: &peers::Peer,
    deflate: Option<DeflateConfig>,
) -> (Option<DeflateParams>, serde_json::Value) {
    let ws = client(peer).deflate(deflate).connect().unwrap();
    let params = ws.connection().deflate_params().copied();
    (params, echo_workload(peer, ws))
}

/// A client of `peer` that gives up on a silent peer.
fn client(peer: &peers::Peer) -> ClientBuilder {
    ClientBuilder::new(&peer.url).read_timeout(Some(Duration::from_secs(10)))
}

/// Echoes the workload over `ws`, just opened to `peer`, and closes; returns what the server
/// saw of the handshake.
fn echo_workload(peer: &peers::Peer, mut ws: WebSocket<MaybeTlsStream>) -> serde_json::Value {
    let seen = peer.event("headers");
    for message in workload() {
        ws.send(message.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), message);
    }
    let start = std::time::Instant::now();
    ws.close_and_wait(Some(CloseFrame::new(1000, "done")))
        .unwrap();
    // The server closes TCP right after the closing handshake: no waiting out the timeout.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "close took {:?}",
        start.elapsed()
    );
    drop(ws);
    assert_eq!(peer.event("closed")["code"], 1000);
    seen
}

#[cfg(feature = "deflate")]
fn params(peer_bits: u8, our_bits: u8, peer_reset: bool, our_reset: bool) -> Option<DeflateParams> {
    Some(DeflateParams {
        local_no_context_takeover: our_reset,
        remote_no_context_takeover: peer_reset,
        local_max_window_bits: our_bits,
        remote_max_window_bits: peer_bits,
    })
}

/// A server without permessage-deflate, whatever the client offers (by default with the
/// `deflate` feature; nothing without it).
#[test]
fn python_websockets_without_compression() {
    let peer = peers::python_server(&[]);
    let ws = client(&peer).connect().unwrap();
    #[cfg(feature = "deflate")]
    assert_eq!(ws.connection().deflate_params(), None);
    let seen = echo_workload(&peer, ws);
    assert!(seen["extensions"].is_null(), "{seen}");
}

/// Without the `deflate` feature nothing is offered, even to a server that would compress.
#[test]
#[cfg(not(feature = "deflate"))]
fn python_websockets_ready_to_compress_gets_no_offer() {
    let peer = peers::python_server(&["--deflate"]);
    let ws = client(&peer).connect().unwrap();
    let seen = echo_workload(&peer, ws);
    assert!(
        seen["headers"].get("sec-websocket-extensions").is_none(),
        "{seen}"
    );
}

#[test]
#[cfg(feature = "deflate")]
fn python_websockets_with_context_takeover() {
    let peer = peers::python_server(&["--deflate"]);
    assert_eq!(
        echo_all(&peer, Some(DeflateConfig::default())),
        params(15, 15, false, false)
    );
}

#[test]
#[cfg(feature = "deflate")]
fn python_websockets_without_context_takeover() {
    let peer = peers::python_server(&[
        "--deflate",
        "--server-no-context-takeover",
        "--client-no-context-takeover",
    ]);
    assert_eq!(
        echo_all(&peer, Some(DeflateConfig::default())),
        params(15, 15, true, true)
    );
}

#[test]
#[cfg(feature = "deflate")]
fn python_websockets_with_reduced_windows() {
    let peer = peers::python_server(&[
        "--deflate",
        "--server-max-window-bits",
        "10",
        "--client-max-window-bits",
        "9",
    ]);
    assert_eq!(
        echo_all(&peer, Some(DeflateConfig::default())),
        params(10, 9, false, false)
    );
}

#[test]
#[cfg(feature = "deflate")]
fn python_websockets_honours_our_requests() {
    let peer = peers::python_server(&["--deflate"]);
    let ours = DeflateConfig::default()
        .server_no_context_takeover(true)
        .server_max_window_bits(Some(11))
        .client_no_context_takeover(true);
    assert_eq!(echo_all(&peer, Some(ours)), params(11, 15, true, true));
}

#[test]
#[cfg(feature = "deflate")]
fn python_websockets_asking_for_an_eight_bit_client_window() {
    // zlib cannot compress with 8 bits: we agree and send uncompressed (allowed by RFC 7692).
    let peer = peers::python_server(&["--deflate", "--client-max-window-bits", "8"]);
    assert_eq!(
        echo_all(&peer, Some(DeflateConfig::default())),
        params(15, 8, false, false)
    );
}

#[test]
#[cfg(feature = "deflate")]
fn node_ws_with_and_without_compression() {
    let cases = [
        ("false", None),
        (r#"{"threshold":0}"#, params(15, 15, false, false)),
        (
            r#"{"threshold":0,"serverNoContextTakeover":true,"clientNoContextTakeover":true}"#,
            params(15, 15, true, true),
        ),
        (
            r#"{"threshold":0,"serverMaxWindowBits":10,"clientMaxWindowBits":11}"#,
            params(10, 11, false, false),
        ),
    ];
    for (options, expected) in cases {
        let Some(peer) = peers::node_server(options) else {
            return;
        };
        assert_eq!(
            echo_all(&peer, Some(DeflateConfig::default())),
            expected,
            "{options}"
        );
    }
}

#[test]
#[cfg(feature = "deflate")]
fn compression_can_be_turned_off() {
    let peer = peers::python_server(&["--deflate"]);
    let (params, seen) = echo_all_seen(&peer, None);
    assert_eq!(params, None);
    assert!(
        seen["headers"].get("sec-websocket-extensions").is_none(),
        "{seen}"
    );
}
