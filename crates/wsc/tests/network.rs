//! Real networks on loopback: dual-stack connects (Happy Eyeballs), keepalive against a peer
//! that stops answering, idle-read timeouts, reconnecting after a server dies, and redirects.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

mod common;
use common::Uncompressed;

use wsc::reconnect::{AttemptFailed, Disconnect, Event, Reconnect, Reconnected};
use wsc::{ClientBuilder, CloseCode, CloseFrame, Error, Keepalive, Message, Phase, RedirectError};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn builder(url: &str) -> ClientBuilder {
    ClientBuilder::new(url)
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .handshake_timeout(Duration::from_secs(10))
}

/// Accepts one WebSocket connection and echoes until the client closes.
fn echo_on(listener: TcpListener) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        while let Ok(message) = ws.read() {
            if message.is_data() && ws.send(message).is_err() {
                return;
            }
        }
    })
}

/// A listener on `ip` at a port that is free on both loopback families.
fn listener_with_free_twin(ip: IpAddr) -> (TcpListener, u16) {
    for _ in 0..50 {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let other = if ip.is_ipv4() { V6 } else { V4 };
        if TcpListener::bind((other, port)).is_ok() {
            return (listener, port);
        }
    }
    panic!("no port free on both families");
}

#[test]
fn dual_stack_connect_falls_back_when_one_family_refuses() {
    for (listening, order) in [(V4, [V6, V4]), (V6, [V4, V6])] {
        let (listener, port) = listener_with_free_twin(listening);
        let server = echo_on(listener);
        let mut ws = builder(&format!("ws://localhost:{port}/"))
            .resolve("localhost", order)
            .connect()
            .unwrap();
        assert_eq!(ws.get_ref().tcp().peer_addr().unwrap().ip(), listening);
        ws.send_text("over the family that answers").unwrap();
        assert_eq!(
            ws.read().unwrap().as_text(),
            Some("over the family that answers")
        );
        ws.close_and_wait(None).unwrap();
        server.join().unwrap();
    }
}

#[test]
fn the_system_resolver_is_used_for_localhost() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = echo_on(listener);
    let mut ws = builder(&format!("ws://localhost:{port}/"))
        .connect()
        .unwrap();
    ws.send_text("hi").unwrap();
    assert_eq!(ws.read().unwrap().as_text(), Some("hi"));
    ws.close_and_wait(None).unwrap();
    server.join().unwrap();
}

/// A listener whose accept queue is full: further SYNs are dropped, as on a network that
/// black-holes the address. The returned values keep it so.
#[cfg(feature = "tokio")]
async fn black_holed(ip: IpAddr, port: u16) -> (tokio::net::TcpListener, TcpStream) {
    let socket = match ip {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(SocketAddr::new(ip, port)).unwrap();
    let listener = socket.listen(0).unwrap();
    let filler = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (listener, filler)
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn an_unanswered_connect_times_out_in_the_connect_phase() {
    let (listener, _filler) = black_holed(V4, 0).await;
    let port = listener.local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/");
    let timeout = Duration::from_millis(300);
    let blocking_url = url.clone();
    let (result, took) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let result = builder(&blocking_url).connect_timeout(timeout).connect();
        (result.map(drop), start.elapsed())
    })
    .await
    .unwrap();
    assert!(
        matches!(result, Err(Error::Timeout(Phase::Connect))),
        "{result:?}"
    );
    assert!(took >= timeout && took < timeout * 5, "took {took:?}");

    let start = Instant::now();
    let result = builder(&url).connect_timeout(timeout).connect_async().await;
    assert!(
        matches!(result, Err(Error::Timeout(Phase::Connect))),
        "{:?}",
        result.map(drop)
    );
    assert!(start.elapsed() >= timeout && start.elapsed() < timeout * 5);
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_family_costs_a_short_delay_not_the_connect_timeout() {
    let (listener, port) = listener_with_free_twin(V4);
    let _hole = black_holed(V6, port).await;
    let server = echo_on(listener);
    let url = format!("ws://localhost:{port}/");
    let timeout = Duration::from_secs(20);

    // Blocking: IPv6 listed first, never answers; IPv4 is tried beside it after 250 ms.
    let blocking_url = url.clone();
    let (mut ws, took) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let ws = builder(&blocking_url)
            .connect_timeout(timeout)
            .resolve("localhost", [V6, V4])
            .connect()
            .unwrap();
        (ws, start.elapsed())
    })
    .await
    .unwrap();
    assert!(took < timeout / 2, "connect took {took:?}");
    assert_eq!(ws.get_ref().tcp().peer_addr().unwrap().ip(), V4);
    ws.send_text("a").unwrap();
    assert_eq!(ws.read().unwrap().as_text(), Some("a"));
    ws.close_and_wait(None).unwrap();
    server.join().unwrap();

    // Async, against a second server on the same port.
    let listener = TcpListener::bind((V4, port)).unwrap();
    let server = echo_on(listener);
    let start = Instant::now();
    let (mut ws, _) = builder(&url)
        .connect_timeout(timeout)
        .resolve("localhost", [V6, V4])
        .connect_async()
        .await
        .unwrap();
    assert!(start.elapsed() < timeout / 2, "took {:?}", start.elapsed());
    assert_eq!(ws.get_ref().tcp().peer_addr().unwrap().ip(), V4);
    ws.send_text("b").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("b"));
    ws.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_dual_stack_connect_falls_back_when_one_family_refuses() {
    let (listener, port) = listener_with_free_twin(V6);
    let server = echo_on(listener);
    let (mut ws, _) = builder(&format!("ws://localhost:{port}/"))
        .resolve("localhost", [V4, V6])
        .connect_async()
        .await
        .unwrap();
    assert_eq!(ws.get_ref().tcp().peer_addr().unwrap().ip(), V6);
    ws.send_text("v6").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap().as_text(), Some("v6"));
    ws.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

/// Completes the WebSocket handshake, then neither reads nor answers anything: a peer that
/// died (or a path that went dead) after the connection opened.
fn unresponsive_server() -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let ws = wsc::server::accept(tcp).unwrap();
        thread::sleep(Duration::from_secs(3));
        drop(ws);
    });
    (url, handle)
}

#[test]
fn keepalive_detects_a_peer_that_stops_answering_pings() {
    let (url, server) = unresponsive_server();
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(1000));
    // The keepalive clock starts in connect.
    let start = Instant::now();
    let mut ws = builder(&url).keepalive(keepalive).connect().unwrap();
    match ws.read() {
        Err(Error::KeepaliveTimeout(waited)) => assert_eq!(waited, keepalive.timeout),
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    // Detected at interval + timeout (1.2 s), not before the pong could have come, nor a
    // timeout later (the blocking client took 2.2 s: writing the ping counted as a sign of
    // life).
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1200), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    server.join().unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_keepalive_detects_a_peer_that_stops_answering_pings() {
    let (url, server) = unresponsive_server();
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(1000));
    // The keepalive clock starts in connect.
    let start = Instant::now();
    let (mut ws, _) = builder(&url)
        .keepalive(keepalive)
        .connect_async()
        .await
        .unwrap();
    match ws.recv().await {
        Some(Err(Error::KeepaliveTimeout(_))) => {}
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1200), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert!(ws.recv().await.is_none());
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

/// Answers pings (automatically), counts them, and sends one message after `after`.
fn pinged_server(after: Duration) -> (String, thread::JoinHandle<usize>) {
    let mut start = None;
    pinged_server_when(move || start.get_or_insert_with(Instant::now).elapsed() >= after)
}

/// [`pinged_server`], sending its message once `ready` (asked every 20 ms) says so.
fn pinged_server_when(
    mut ready: impl FnMut() -> bool + Send + 'static,
) -> (String, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut pings = 0;
        let mut sent = false;
        loop {
            if !sent && ready() {
                ws.send_text("still here").unwrap();
                sent = true;
            }
            match ws.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Close(_)) => return pings,
                Ok(_) => {}
                Err(Error::Timeout(_)) => {}
                Err(e) => panic!("server: {e}"),
            }
        }
    });
    (url, handle)
}

#[test]
fn keepalive_keeps_a_live_connection_and_pings_on_schedule() {
    let (url, server) = pinged_server(Duration::from_millis(1000));
    let keepalive = Keepalive::new(Duration::from_millis(100), Duration::from_millis(500));
    let mut ws = builder(&url).keepalive(keepalive).connect().unwrap();
    assert_eq!(ws.latency(), None, "no pong yet");
    let mut pongs = 0;
    let text = loop {
        match ws.read().unwrap() {
            Message::Pong(_) => {
                pongs += 1;
                // Each pong answers a ping: the round trip is known, within the timeout.
                let rtt = ws.latency().expect("a round trip once a pong is in");
                assert!(rtt < Duration::from_millis(500), "{rtt:?}");
            }
            Message::Text(t) => break t,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(text, "still here");
    ws.close_and_wait(None).unwrap();
    let pings = server.join().unwrap();
    assert!(pings >= 5, "only {pings} pings in a second at 100 ms");
    assert!(pongs >= 5, "only {pongs} pongs");
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_idle_read_timeout_is_reported_and_the_stream_survives() {
    // The server sends only once the client has seen two timeouts (not by its own clock,
    // which a busy machine can put out of step with the client's).
    let (go, wait) = std::sync::mpsc::channel();
    let (url, server) = pinged_server_when(move || wait.try_recv().is_ok());
    let timeout = Duration::from_millis(200);
    let (mut ws, _) = builder(&url)
        .read_timeout(Some(timeout))
        .connect_async()
        .await
        .unwrap();
    let mut timeouts = 0;
    let text = loop {
        let start = Instant::now();
        match ws.recv().await.unwrap() {
            Err(Error::Timeout(Phase::Read)) => {
                let waited = start.elapsed();
                assert!(waited >= timeout - Duration::from_millis(10), "{waited:?}");
                timeouts += 1;
                if timeouts == 2 {
                    go.send(()).unwrap();
                }
                assert!(timeouts < 50, "the message sent never came");
            }
            Ok(Message::Text(t)) => break t,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(text, "still here");
    ws.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_handshake_times_out_when_the_server_accepts_tcp_but_never_answers() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let hold = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_millis(1500));
        drop(tcp);
    });
    let err = builder(&url)
        .handshake_timeout(Duration::from_millis(300))
        .connect_async()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(Phase::WebSocketHandshake)),
        "{err}"
    );
    tokio::task::spawn_blocking(move || hold.join().unwrap())
        .await
        .unwrap();
}

/// One life of a feed server: accepts a client, waits for its subscription, sends `tick`
/// and the subscription (`"{tick} after {subscription}"`), then ends as `end` says: `None`
/// kills it (TCP dropped without a close), `Some` closes with it.
fn feed_life(listener: TcpListener, tick: &'static str, end: Option<CloseCode>) {
    let (tcp, _) = listener.accept().unwrap();
    drop(listener);
    let mut ws = wsc::server::accept(tcp).unwrap();
    let subscription = ws.read().unwrap();
    let subscription = subscription.as_text().unwrap();
    ws.send_text(&format!("{tick} after {subscription}"))
        .unwrap();
    if let Some(code) = end {
        ws.close(Some(CloseFrame::new(code, "restart"))).unwrap();
        while ws.read().is_ok() {}
    }
}

/// Takes `event`, one of those of a gap: a failed attempt is added to `failed`, a reconnect
/// returned, once asserted to count the failed attempts reported (numbered 1, 2, ...).
fn end_of_gap(event: Event, failed: &mut Vec<AttemptFailed>) -> Option<Reconnected> {
    match event {
        Event::AttemptFailed(f) => {
            assert_eq!(f.attempt as usize, failed.len() + 1, "{f:?}");
            failed.push(f);
            None
        }
        Event::Reconnected(r) => {
            assert_eq!(
                r.attempts as usize,
                failed.len() + 1,
                "{r:?} after {failed:?}"
            );
            Some(r)
        }
        other => panic!("expected a failed attempt or the reconnect, got {other:?}"),
    }
}

/// The blocking client's events until the reconnect: the failed attempts, the reconnect.
fn through_the_gap(feed: &mut wsc::Reconnecting) -> (Vec<AttemptFailed>, Reconnected) {
    let mut failed = Vec::new();
    loop {
        if let Some(r) = end_of_gap(feed.next_event().unwrap(), &mut failed) {
            return (failed, r);
        }
    }
}

/// As [`through_the_gap`], for the async client.
#[cfg(feature = "tokio")]
async fn through_the_gap_async(
    feed: &mut wsc::tokio::Reconnecting,
) -> (Vec<AttemptFailed>, Reconnected) {
    let mut failed = Vec::new();
    loop {
        if let Some(r) = end_of_gap(feed.next_event().await.unwrap(), &mut failed) {
            return (failed, r);
        }
    }
}

/// Asserts that the reconnect at the end of the gap took failed attempts first (the server
/// was down, refusing connections) and at least `min_downtime_ms`.
fn assert_reconnected_after_refusals(gap: (Vec<AttemptFailed>, Reconnected), min_downtime_ms: u64) {
    let (failed, r) = gap;
    assert!(!failed.is_empty(), "{r:?}");
    for f in &failed {
        assert!(matches!(f.error, Error::Connect { .. }), "{f:?}");
        assert_eq!(f.retry_after, None);
    }
    assert!(
        r.downtime >= Duration::from_millis(min_downtime_ms),
        "{r:?}"
    );
}

/// A feed server that comes back on `addr` after `down` (connections are refused until
/// then) for one life that ends with a close of `end`.
fn feed_life_later(
    addr: std::net::SocketAddr,
    down: Duration,
    tick: &'static str,
    end: CloseCode,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(down);
        feed_life(bind_again(addr), tick, Some(end));
    })
}

#[test]
fn reconnect_after_the_server_dies_resubscribes_and_reports_the_gap() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let policy = Reconnect::new()
        .initial_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(200));
    let first = thread::spawn(move || feed_life(listener, "tick 1", None));
    let mut feed = builder(&format!("ws://{addr}/feed"))
        .connect_reconnecting(policy)
        .unwrap();
    feed.subscribe("subscribe:ticker").unwrap();
    assert!(matches!(feed.next_event().unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    first.join().unwrap();
    match feed.next_event().unwrap() {
        Event::Disconnected(Disconnect::Failed(Error::ConnectionReset)) => {}
        other => panic!("expected the drop, got {other:?}"),
    }
    // Between connections a send says so, unlike one after `close`.
    assert!(matches!(feed.send("now?"), Err(Error::NotConnected)));
    // Changed while down: the new one is what the next connection gets.
    feed.subscriptions_mut()[0] = Message::text("subscribe:ticker:v2");
    // The server is down for a while: attempts fail, then it comes back on the same port.
    let restart = feed_life_later(
        addr,
        Duration::from_millis(500),
        "tick 2",
        CloseCode::GOING_AWAY,
    );
    assert_reconnected_after_refusals(through_the_gap(&mut feed), 400);
    assert!(matches!(feed.next_event().unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 2 after subscribe:ticker:v2")));
    match feed.next_event().unwrap() {
        Event::Disconnected(Disconnect::Closed(Some(frame))) => {
            assert_eq!(frame.code, CloseCode::GOING_AWAY)
        }
        other => panic!("expected the server's close, got {other:?}"),
    }
    restart.join().unwrap();
    feed.close(None).unwrap();
    assert!(matches!(feed.next_event(), Err(Error::ConnectionClosed)));
    assert!(matches!(feed.send("now?"), Err(Error::ConnectionClosed)));
}

#[test]
fn a_resubscription_the_server_is_slow_to_take_does_not_fail_the_reconnect() {
    // The subscription is bigger than the sockets take before the server reads (8 MB), and
    // the server starts reading only after a while. Before, the reconnect's send of it timed
    // out (the write timeout) and the attempt failed, the connection dropped with its
    // message queued, again at every attempt.
    const SIZE: usize = 8 << 20;
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        // First life: closes at once (1001).
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        ws.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restart")))
            .unwrap();
        while ws.read().is_ok() {}
        // Second life: reads nothing for a while, then the subscription.
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        thread::sleep(Duration::from_millis(600));
        let subscription = ws.read().unwrap();
        ws.send_text(&format!("got {}", subscription.len()))
            .unwrap();
        while ws.read().is_ok() {}
    });
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let run = || -> Result<Vec<String>, Error> {
            let mut feed = builder(&format!("ws://{addr}/"))
                .uncompressed()
                .write_timeout(Duration::from_millis(50))
                .handshake_timeout(Duration::from_secs(2))
                .connect_reconnecting(
                    Reconnect::new()
                        .initial_delay(Duration::from_millis(10))
                        .max_attempts(Some(2)),
                )?;
            feed.subscriptions_mut()
                .push(Message::binary(vec![7u8; SIZE]));
            let mut events = Vec::new();
            while events.len() < 3 {
                match feed.next_event() {
                    Ok(Event::Message(m)) => events.push(m.as_text().unwrap_or("").to_string()),
                    Ok(Event::Disconnected(_)) => events.push("down".into()),
                    Ok(Event::Reconnected(_)) => events.push("up".into()),
                    Ok(other) => events.push(format!("{other:?}")),
                    Err(Error::Timeout(Phase::Write | Phase::Read)) => {}
                    Err(e) => return Err(e),
                }
            }
            let _ = feed.close(None);
            Ok(events)
        };
        let _ = tx.send(run().map_err(|e| e.to_string()));
    });
    let events = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the client did not finish in 20 s");
    assert_eq!(
        events,
        Ok(vec!["down".to_string(), "up".into(), format!("got {SIZE}")])
    );
    server.join().unwrap();
}

/// A first life that closes at once (1001), then a second that reads and sends nothing for
/// 4 s: a server that takes none of a resubscription.
fn restart_then_go_silent(listener: TcpListener) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        {
            let (tcp, _) = listener.accept().unwrap();
            let mut ws = wsc::server::accept(tcp).unwrap();
            ws.close(Some(CloseFrame::new(CloseCode::GOING_AWAY, "restart")))
                .unwrap();
            while ws.read().is_ok() {}
        }
        let (tcp, _) = listener.accept().unwrap();
        let ws = wsc::server::accept(tcp).unwrap();
        thread::sleep(Duration::from_secs(4));
        drop(ws);
    })
}

#[test]
fn keepalive_finds_a_server_that_takes_no_resubscription_dead() {
    // No write timeout (the default): the resubscription, bigger than the sockets take,
    // must not hold the reconnect while the server reads nothing and sends nothing.
    const SIZE: usize = 8 << 20;
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = restart_then_go_silent(listener);
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(300));
    let mut feed = builder(&format!("ws://{addr}/"))
        .uncompressed()
        .keepalive(keepalive)
        .connect_reconnecting(
            Reconnect::new()
                .initial_delay(Duration::from_millis(10))
                .max_attempts(Some(1)),
        )
        .unwrap();
    feed.subscriptions_mut()
        .push(Message::binary(vec![7u8; SIZE]));
    let start = Instant::now();
    assert!(matches!(
        feed.next_event().unwrap(),
        Event::Disconnected(Disconnect::Closed(_))
    ));
    assert!(matches!(feed.next_event().unwrap(), Event::Reconnected(_)));
    match feed.next_event().unwrap() {
        Event::Disconnected(Disconnect::Failed(Error::KeepaliveTimeout(_))) => {}
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(feed);
    server.join().unwrap();
}

#[test]
fn a_subscription_is_queued_even_behind_a_full_queue() {
    // A server that reads nothing for a while. The first subscription's write times out (it
    // stays queued); the second was refused with SendQueueFull yet kept in the list, so that
    // a caller who subscribed again as told had it twice in every resubscription.
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        thread::sleep(Duration::from_millis(600));
        let mut sizes = Vec::new();
        while let Ok(m) = ws.read() {
            if m.is_data() {
                sizes.push(m.len());
            }
        }
        sizes
    });
    let mut feed = builder(&format!("ws://{addr}/"))
        .uncompressed()
        .write_timeout(Duration::from_millis(50))
        .connect_reconnecting(Reconnect::new())
        .unwrap();
    let first = feed.subscribe(Message::binary(vec![7u8; 8 << 20]));
    assert!(
        matches!(first, Err(Error::Timeout(Phase::Write))),
        "{first:?}"
    );
    match feed.subscribe("second") {
        Ok(()) | Err(Error::Timeout(Phase::Write)) => {}
        Err(e) => panic!("{e}"),
    }
    assert_eq!(feed.subscriptions().len(), 2);
    // Both go out once the server reads.
    let ws = feed.get_mut().unwrap();
    let start = Instant::now();
    while let Err(e) = ws.flush() {
        assert!(matches!(e, Error::Timeout(Phase::Write)), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10), "never written");
    }
    feed.close(None).unwrap();
    assert_eq!(server.join().unwrap(), [8 << 20, 6]);
}

#[test]
#[cfg(target_os = "linux")] // socket2 and poll, for the reset
fn a_subscription_made_on_a_dead_connection_is_no_error_and_goes_out_once_after_the_reconnect() {
    // The server resets the connection before the client has noticed. Subscribing then
    // returned ConnectionReset with the message already in the list: a caller who subscribed
    // again had it sent twice after every reconnect.
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let (reset, was_reset) = std::sync::mpsc::channel();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let ws = wsc::server::accept(tcp).unwrap();
        socket2::SockRef::from(ws.get_ref())
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(ws);
        reset.send(()).unwrap();
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        let mut got = Vec::new();
        while let Ok(m) = ws.read() {
            if m.is_data() {
                got.push(m.into_payload());
            }
        }
        got
    });
    let mut feed = builder(&format!("ws://{addr}/"))
        .uncompressed()
        .connect_reconnecting(
            Reconnect::new()
                .initial_delay(Duration::from_millis(10))
                .jitter(false),
        )
        .unwrap();
    was_reset.recv_timeout(Duration::from_secs(10)).unwrap();
    common::wait_for_reset(feed.get_ref().unwrap().get_ref().tcp().as_raw_fd());
    feed.subscribe("sub").unwrap();
    assert_eq!(feed.subscriptions(), [Message::text("sub")]);
    assert!(matches!(feed.next_event(), Ok(Event::Disconnected(_))));
    assert!(matches!(feed.next_event(), Ok(Event::Reconnected(_))));
    feed.close(None).unwrap();
    assert_eq!(server.join().unwrap(), [bytes::Bytes::from("sub")]);
}

#[test]
fn reconnect_gives_up_after_max_attempts() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || feed_life(listener, "only", None));
    let mut feed = builder(&format!("ws://{addr}/"))
        .connect_reconnecting(
            Reconnect::new()
                .initial_delay(Duration::from_millis(10))
                .max_attempts(Some(3)),
        )
        .unwrap();
    feed.subscribe("subscribe:ticker").unwrap();
    assert!(matches!(feed.next_event().unwrap(), Event::Message(_)));
    server.join().unwrap();
    assert!(matches!(feed.next_event().unwrap(), Event::Disconnected(_)));
    // Three attempts: the first two reported, the third's error returned.
    for attempt in 1..=2 {
        match feed.next_event() {
            Ok(Event::AttemptFailed(f)) => {
                assert_eq!(f.attempt, attempt);
                assert!(matches!(f.error, Error::Connect { .. }), "{f:?}");
            }
            other => panic!("expected failed attempt {attempt}, got {other:?}"),
        }
    }
    match feed.next_event() {
        Err(Error::Connect { .. }) => {}
        other => panic!("expected the last connect error, got {other:?}"),
    }
    assert!(feed.has_given_up());
    // From then on, every call says it gave up (not as after the caller's close).
    assert!(matches!(
        feed.next_event(),
        Err(Error::GaveUp { attempts: 3 })
    ));
    assert!(matches!(
        feed.send("now?"),
        Err(Error::GaveUp { attempts: 3 })
    ));
}

/// Answers the next connection on `listener` with a refusal: `status` and `headers` (each
/// line ending in CRLF). Returns the path the client asked for.
fn refuse_one(listener: &TcpListener, status: &str, headers: &str) -> String {
    let (mut tcp, _) = listener.accept().unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "the client left before its request was in");
        request.extend_from_slice(&buf[..n]);
    }
    let head = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 0\r\n\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    let request = String::from_utf8_lossy(&request).into_owned();
    request.split(' ').nth(1).unwrap_or_default().to_string()
}

/// Asserts `f` is the failure of a refusal with `status` whose `Retry-After` set the wait
/// before the next attempt to `secs`.
fn assert_put_off_by_retry_after(f: &AttemptFailed, status: u16, secs: u64) {
    match &f.error {
        Error::Handshake(wsc::HandshakeError::Rejected(response)) => {
            assert_eq!(response.status.as_u16(), status)
        }
        other => panic!("expected the refusal, got {other:?}"),
    }
    let wait = Duration::from_secs(secs);
    assert_eq!((f.retry_in, f.retry_after), (wait, Some(wait)), "{f:?}");
}

/// A feed whose URL carries a token good for one connection: `builder_mut` gives each
/// attempt the builder as changed on the events before it. And `retry_if`, widened, retries
/// a 404 (a load balancer's, during a deploy), which by default ends reconnecting.
#[test]
fn each_attempt_connects_with_the_builder_as_changed_and_retry_if_widens_what_is_retried() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let acceptor = wsc::server::Acceptor::new();
        let (tcp, _) = listener.accept().unwrap();
        let (first, request) = acceptor.accept(tcp).unwrap();
        drop(first);
        let mut paths = vec![request.path];
        paths.push(refuse_one(&listener, "404 Not Found", ""));
        let (tcp, _) = listener.accept().unwrap();
        let (mut ws, request) = acceptor.accept(tcp).unwrap();
        paths.push(request.path);
        ws.send_text("welcome").unwrap();
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
        paths
    });
    let url = |token: u32| format!("ws://{addr}/feed?token={token}");
    let policy = Reconnect::new()
        .initial_delay(Duration::from_millis(10))
        .retry_if(|e| {
            wsc::reconnect::is_retryable(e)
                || matches!(e, Error::Handshake(wsc::HandshakeError::Rejected(_)))
        });
    let mut feed = builder(&url(1)).connect_reconnecting(policy).unwrap();
    let mut token = 1;
    let mut refusals = Vec::new();
    loop {
        match feed.next_event().unwrap() {
            Event::Message(m) if m.as_text() == Some("welcome") => break,
            Event::Disconnected(_) => {}
            Event::AttemptFailed(f) => refusals.push(f.error.to_string()),
            Event::Reconnected(_) => continue,
            other => panic!("{other:?}"),
        }
        token += 1;
        *feed.builder_mut() = builder(&url(token));
    }
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("404"), "{refusals:?}");
    feed.close(None).unwrap();
    assert_eq!(
        server.join().unwrap(),
        ["/feed?token=1", "/feed?token=2", "/feed?token=3"]
    );
}

/// A server that refuses with `Retry-After` (a 503 while it restarts, a 429 from a service
/// that limits its rate) is left alone that long, however short the backoff's delay:
/// exchanges ban the addresses of clients that come back sooner.
#[test]
fn a_refusal_with_retry_after_puts_the_next_attempt_off_that_long() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        refuse_one(&listener, "503 Service Unavailable", "Retry-After: 1\r\n");
        feed_life(listener, "tick 1", Some(CloseCode::NORMAL));
    });
    let policy = Reconnect::new()
        .initial_delay(Duration::from_millis(10))
        .jitter(false)
        .retry_first_connect(true);
    let start = Instant::now();
    let mut feed = builder(&format!("ws://{addr}/feed"))
        .connect_reconnecting(policy)
        .unwrap();
    feed.subscribe("subscribe:ticker").unwrap();
    let (failed, r) = through_the_gap(&mut feed);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_put_off_by_retry_after(&failed[0], 503, 1);
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(r.downtime >= Duration::from_secs(1), "{r:?}");
    assert!(matches!(feed.next_event().unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    feed.close(None).unwrap();
    server.join().unwrap();
}

/// A server's life that closes the next connection on `listener` at once (a clean close,
/// the client's answer read).
#[cfg(feature = "tokio")]
fn close_at_once(listener: &TcpListener) {
    let (tcp, _) = listener.accept().unwrap();
    let mut ws = wsc::server::accept(tcp).unwrap();
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
}

/// An async reconnecting client of `url` for a test that pauses tokio's clock: no connect
/// or handshake timeout, which the paused clock would jump to while a handshake waits.
#[cfg(feature = "tokio")]
async fn reconnecting_on_tokios_clock(url: String, policy: Reconnect) -> wsc::tokio::Reconnecting {
    ClientBuilder::new(url)
        .no_proxy()
        .connect_timeout(None)
        .handshake_timeout(None)
        .connect_reconnecting_async(policy)
        .await
        .unwrap()
}

/// As the blocking client's, after a drop, on tokio's clock (paused: two minutes pass in
/// no time); `max_retry_after` cuts a longer wait.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_a_refusal_with_retry_after_puts_the_next_attempt_off_that_long() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        close_at_once(&listener);
        refuse_one(&listener, "429 Too Many Requests", "Retry-After: 120\r\n");
        refuse_one(
            &listener,
            "503 Service Unavailable",
            "Retry-After: 86400\r\n",
        );
        feed_life(listener, "tick 2", Some(CloseCode::NORMAL));
    });
    let policy = Reconnect::new()
        .initial_delay(Duration::from_millis(10))
        .jitter(false)
        .max_retry_after(Some(Duration::from_secs(300)));
    let mut feed = reconnecting_on_tokios_clock(format!("ws://{addr}/feed"), policy).await;
    feed.subscribe("subscribe:ticker").await.unwrap();
    assert!(matches!(
        feed.next_event().await.unwrap(),
        Event::Disconnected(Disconnect::Closed(_))
    ));
    tokio::time::pause();
    let (start, real_start) = (tokio::time::Instant::now(), Instant::now());
    let (failed, r) = through_the_gap_async(&mut feed).await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_put_off_by_retry_after(&failed[0], 429, 120);
    assert_put_off_by_retry_after(&failed[1], 503, 300);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(420), "{waited:?} ({r:?})");
    assert!(waited < Duration::from_secs(425), "{waited:?}");
    assert!(real_start.elapsed() < Duration::from_secs(5));
    // Real time again: a paused clock jumps to the close timeout whenever the runtime waits,
    // as it does for the server thread's answer (7 runs in 30 failed with Timeout(Close)).
    tokio::time::resume();
    assert!(matches!(feed.next_event().await.unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 2 after subscribe:ticker")));
    feed.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

/// A port nothing listens on (yet): connections to it are refused.
fn refusing_port() -> std::net::SocketAddr {
    TcpListener::bind((V4, 0)).unwrap().local_addr().unwrap()
}

/// `retry_first_connect`: a client started before its server waits for it, subscription
/// and all; without it, or once `max_attempts` (the first counted) runs out, the first
/// failure is the answer, at once.
#[test]
fn the_first_connection_is_retried_when_the_policy_says_so() {
    let policy = || {
        Reconnect::new()
            .initial_delay(Duration::from_millis(50))
            .max_delay(Duration::from_millis(100))
    };
    let addr = refusing_port();
    let url = format!("ws://{addr}/feed");
    assert!(matches!(
        builder(&url).connect_reconnecting(policy()),
        Err(Error::Connect { .. })
    ));
    assert!(matches!(
        builder(&url)
            .connect_reconnecting(policy().retry_first_connect(true).max_attempts(Some(1))),
        Err(Error::Connect { .. })
    ));
    let mut feed = builder(&url)
        .connect_reconnecting(policy().retry_first_connect(true))
        .unwrap();
    assert!(feed.get_ref().is_none());
    feed.subscribe("subscribe:ticker").unwrap();
    let server = feed_life_later(
        addr,
        Duration::from_millis(300),
        "tick 1",
        CloseCode::GOING_AWAY,
    );
    assert_reconnected_after_refusals(through_the_gap(&mut feed), 250);
    assert!(matches!(feed.next_event().unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    assert!(matches!(
        feed.next_event().unwrap(),
        Event::Disconnected(Disconnect::Closed(_))
    ));
    server.join().unwrap();
    feed.close(None).unwrap();
}

/// As the blocking client's.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_the_first_connection_is_retried_when_the_policy_says_so() {
    let policy = || {
        Reconnect::new()
            .initial_delay(Duration::from_millis(50))
            .max_delay(Duration::from_millis(100))
    };
    let addr = refusing_port();
    let url = format!("ws://{addr}/feed");
    assert!(matches!(
        builder(&url).connect_reconnecting_async(policy()).await,
        Err(Error::Connect { .. })
    ));
    let mut feed = builder(&url)
        .connect_reconnecting_async(policy().retry_first_connect(true))
        .await
        .unwrap();
    assert!(feed.get_ref().is_none() && feed.response().is_none());
    feed.subscribe("subscribe:ticker").await.unwrap();
    let server = feed_life_later(
        addr,
        Duration::from_millis(300),
        "tick 1",
        CloseCode::GOING_AWAY,
    );
    assert_reconnected_after_refusals(through_the_gap_async(&mut feed).await, 250);
    assert_eq!(feed.response().map(|r| r.status.as_u16()), Some(101));
    assert!(matches!(feed.next_event().await.unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    assert!(matches!(
        feed.next_event().await.unwrap(),
        Event::Disconnected(Disconnect::Closed(_))
    ));
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    feed.close(None).await.unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_after_the_server_dies_resubscribes_and_reports_the_gap() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let first = thread::spawn(move || feed_life(listener, "tick 1", None));
    let mut feed = builder(&format!("ws://{addr}/feed"))
        .connect_reconnecting_async(Reconnect::new().initial_delay(Duration::from_millis(50)))
        .await
        .unwrap();
    // Each connection's own handshake: its accept key answers that connection's key.
    let accept = |feed: &wsc::tokio::Reconnecting| {
        let response = feed.response().expect("connected");
        assert_eq!(response.status.as_u16(), 101);
        response.headers["sec-websocket-accept"].clone()
    };
    let first_accept = accept(&feed);
    feed.subscribe("subscribe:ticker").await.unwrap();
    assert!(matches!(feed.next_event().await.unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    tokio::task::spawn_blocking(move || first.join().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        feed.next_event().await.unwrap(),
        Event::Disconnected(Disconnect::Failed(_))
    ));
    assert!(feed.response().is_none() && feed.get_ref().is_none());
    assert!(matches!(feed.send("now?").await, Err(Error::NotConnected)));
    let restart = feed_life_later(
        addr,
        Duration::from_millis(300),
        "tick 2",
        CloseCode::NORMAL,
    );
    assert_reconnected_after_refusals(through_the_gap_async(&mut feed).await, 250);
    assert_ne!(accept(&feed), first_accept);
    assert!(feed.get_ref().is_some());
    assert!(matches!(feed.next_event().await.unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 2 after subscribe:ticker")));
    assert!(matches!(
        feed.next_event().await.unwrap(),
        Event::Disconnected(Disconnect::Closed(_))
    ));
    tokio::task::spawn_blocking(move || restart.join().unwrap())
        .await
        .unwrap();
    feed.close(None).await.unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_backoff_runs_on_tokios_clock() {
    // Users test their reconnect logic with tokio's clock paused: the backoff must follow
    // it, not the system clock (which a paused test barely advances).
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        close_at_once(&listener);
        // The listener goes with the thread: every attempt after is refused.
    });
    let policy = Reconnect::new()
        .jitter(false)
        .initial_delay(Duration::from_secs(10))
        .max_delay(Duration::from_secs(80))
        .max_attempts(Some(3));
    let mut feed = reconnecting_on_tokios_clock(format!("ws://{addr}/"), policy).await;
    assert!(matches!(
        feed.next_event().await.unwrap(),
        Event::Disconnected(_)
    ));
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    tokio::time::pause();
    let (start, real_start) = (tokio::time::Instant::now(), Instant::now());
    // Attempts after 10, 20 and 40 s of tokio's time, in far less real time; each failure
    // but the last says when the next comes.
    for (attempt, next) in [(1, 20), (2, 40)] {
        match feed.next_event().await {
            Ok(Event::AttemptFailed(f)) => {
                assert_eq!(
                    (f.attempt, f.retry_in),
                    (attempt, Duration::from_secs(next))
                )
            }
            other => panic!("expected failed attempt {attempt}, got {other:?}"),
        }
    }
    match feed.next_event().await {
        Err(Error::Connect { source, .. })
            if source.kind() == std::io::ErrorKind::ConnectionRefused => {}
        other => panic!("expected the last attempt's refusal, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(70), "{waited:?}");
    assert!(waited < Duration::from_secs(75), "{waited:?}");
    assert!(real_start.elapsed() < Duration::from_secs(5));
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_keepalive_finds_a_server_that_takes_no_resubscription_dead() {
    // The async twin of keepalive_finds_a_server_that_takes_no_resubscription_dead: the
    // replay waited for its flush, with nothing read meanwhile, so keepalive never ran.
    const SIZE: usize = 8 << 20;
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = restart_then_go_silent(listener);
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(300));
    let mut feed = builder(&format!("ws://{addr}/"))
        .uncompressed()
        .keepalive(keepalive)
        .connect_reconnecting_async(
            Reconnect::new()
                .initial_delay(Duration::from_millis(10))
                .max_attempts(Some(1)),
        )
        .await
        .unwrap();
    feed.subscriptions_mut()
        .push(Message::binary(vec![7u8; SIZE]));
    let start = Instant::now();
    assert!(matches!(
        feed.next_event().await.unwrap(),
        Event::Disconnected(Disconnect::Closed(_))
    ));
    let events = tokio::time::timeout(Duration::from_secs(3), async {
        let up = feed.next_event().await;
        let down = feed.next_event().await;
        (up, down)
    })
    .await
    .expect("the replay held next_event");
    assert!(matches!(events.0, Ok(Event::Reconnected(_))), "{events:?}");
    assert!(
        matches!(
            events.1,
            Ok(Event::Disconnected(Disconnect::Failed(
                Error::KeepaliveTimeout(_)
            )))
        ),
        "{events:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(feed);
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_a_cancelled_subscribe_still_goes_out_on_the_current_connection() {
    // Raced against a timer while the write buffer is full, `subscribe` had added the
    // message to the list but not queued it: this connection never got it (and calling
    // again would have put it in the list twice).
    const BIG: usize = 8 << 20;
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        thread::sleep(Duration::from_millis(500));
        let mut sizes = Vec::new();
        while let Ok(m) = ws.read() {
            if m.is_data() {
                sizes.push(m.len());
            }
        }
        sizes
    });
    let mut feed = builder(&format!("ws://{addr}/"))
        .uncompressed()
        .connect_reconnecting_async(Reconnect::new())
        .await
        .unwrap();
    let big = tokio::time::timeout(
        Duration::from_millis(100),
        feed.subscribe(Message::binary(vec![7u8; BIG])),
    )
    .await;
    assert!(big.is_err(), "the big subscription went out at once");
    let small = tokio::time::timeout(Duration::from_millis(100), feed.subscribe("second")).await;
    assert!(small.is_err(), "the second went out at once");
    assert_eq!(feed.subscriptions().len(), 2);
    feed.close(None).await.unwrap();
    let sizes = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert_eq!(sizes, [BIG, 6]);
}

/// A first life that dies at once after the handshake, and a second, started as soon as the
/// first is gone, that greets the client with `"back"`: the only wait between them is the
/// client's backoff.
fn die_then_greet(listener: TcpListener) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        drop(wsc::server::accept(tcp).unwrap());
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        ws.send_text("back").unwrap();
        let _ = ws.read();
    })
}

#[test]
fn reconnect_backoff_is_cut_into_read_timeouts_and_kept_on_schedule() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = die_then_greet(listener);
    let mut feed = builder(&url)
        .read_timeout(Some(Duration::from_millis(100)))
        .connect_reconnecting(
            Reconnect::new()
                .initial_delay(Duration::from_millis(700))
                .jitter(false),
        )
        .unwrap();
    let dropped = loop {
        match feed.next_event() {
            Ok(Event::Disconnected(_)) => break Instant::now(),
            Err(Error::Timeout(Phase::Read)) => {}
            other => panic!("expected the drop, got {other:?}"),
        }
    };
    // A loop that wakes each read timeout (to look at a stop flag, say) is woken during the
    // backoff too, and each call waits on for the same attempt, not a new delay.
    let mut timeouts = 0;
    loop {
        match feed.next_event() {
            Err(Error::Timeout(Phase::Read)) => timeouts += 1,
            Ok(Event::Reconnected(_)) => break,
            other => panic!("expected timeouts, then the reconnect, got {other:?}"),
        }
        assert!(dropped.elapsed() < Duration::from_secs(5), "no reconnect");
    }
    let waited = dropped.elapsed();
    assert!(timeouts >= 4, "{timeouts} timeouts in {waited:?}");
    // The upper bound is loose: it includes a reconnect and a handshake on a busy machine.
    assert!(
        waited >= Duration::from_millis(650) && waited < Duration::from_millis(2500),
        "reconnected after {waited:?}"
    );
    assert!(matches!(feed.next_event(), Ok(Event::Message(m)) if m.as_text() == Some("back")));
    feed.close(None).unwrap();
    server.join().unwrap();
}

#[test]
fn reconnect_backoff_ends_at_the_read_deadline() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = die_then_greet(listener);
    let mut feed = builder(&url)
        .connect_reconnecting(
            Reconnect::new()
                .initial_delay(Duration::from_millis(2000))
                .jitter(false),
        )
        .unwrap();
    assert!(matches!(feed.next_event(), Ok(Event::Disconnected(_))));
    let start = Instant::now();
    feed.set_read_deadline(Some(start + Duration::from_millis(800)));
    assert!(matches!(
        feed.next_event(),
        Err(Error::Timeout(Phase::Read))
    ));
    // Long delays, so that a busy machine's lateness stays far from the wrong answers: the
    // end of the backoff (2 s) for the cut, a backoff restarted after it (2.8 s) for the wait.
    let cut = start.elapsed();
    assert!(
        cut >= Duration::from_millis(790) && cut < Duration::from_millis(1600),
        "{cut:?}"
    );
    feed.set_read_deadline(None);
    assert!(matches!(feed.next_event(), Ok(Event::Reconnected(_))));
    let waited = start.elapsed();
    assert!(waited < Duration::from_millis(2600), "{waited:?}");
    assert!(matches!(feed.next_event(), Ok(Event::Message(m)) if m.as_text() == Some("back")));
    feed.close(None).unwrap();
    server.join().unwrap();
}

/// An async reconnecting client of `url` (backoff from `initial_ms`, no jitter), after the
/// drop of its first connection; and when the drop was seen.
#[cfg(feature = "tokio")]
async fn async_feed_past_its_first_drop(
    url: &str,
    initial_ms: u64,
) -> (wsc::tokio::Reconnecting, Instant) {
    let mut feed = builder(url)
        .connect_reconnecting_async(
            Reconnect::new()
                .initial_delay(Duration::from_millis(initial_ms))
                .jitter(false),
        )
        .await
        .unwrap();
    assert!(matches!(
        feed.next_event().await,
        Ok(Event::Disconnected(_))
    ));
    (feed, Instant::now())
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_is_not_put_off_by_a_select_with_a_shorter_timer() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = die_then_greet(listener);
    let (mut feed, dropped) = async_feed_past_its_first_drop(&url, 400).await;
    let mut ticks = 0;
    loop {
        tokio::select! {
            event = feed.next_event() => match event {
                Ok(Event::Reconnected(_)) => break,
                other => panic!("expected the reconnect, got {other:?}"),
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => ticks += 1,
        }
        // Each cancelled call used to start the backoff over: it never ended.
        assert!(dropped.elapsed() < Duration::from_secs(3), "no reconnect");
    }
    assert!(ticks >= 4, "{ticks} ticks");
    assert!(matches!(feed.next_event().await,
        Ok(Event::Message(m)) if m.as_text() == Some("back")));
    feed.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

/// A feed that serves one connection (a tick, then close 1001) and is gone, with a policy
/// that gives up after two attempts: its URL, its thread and the policy.
fn feed_that_goes_away() -> (String, thread::JoinHandle<()>, Reconnect) {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || feed_life(listener, "tick 1", Some(CloseCode::GOING_AWAY)));
    let policy = Reconnect::new()
        .initial_delay(Duration::from_millis(20))
        .max_attempts(Some(2));
    (format!("ws://{addr}/feed"), server, policy)
}

/// Asserts the events of a client of [`feed_that_goes_away`] subscribed to the ticker, to
/// the end: the tick, the drop, a failed attempt, the last attempt's error and `GaveUp`.
fn assert_ticked_then_gave_up(events: &[Result<Event, Error>]) {
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(matches!(&events[0],
        Ok(Event::Message(m)) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    assert!(matches!(
        &events[1],
        Ok(Event::Disconnected(Disconnect::Closed(Some(f)))) if f.code == CloseCode::GOING_AWAY
    ));
    assert!(matches!(&events[2],
        Ok(Event::AttemptFailed(f)) if f.attempt == 1 && matches!(f.error, Error::Connect { .. })));
    assert!(
        matches!(&events[3], Err(Error::Connect { .. })),
        "{events:?}"
    );
    assert!(
        matches!(&events[4], Err(Error::GaveUp { attempts: 2 })),
        "{events:?}"
    );
}

/// The blocking client is an iterator of its events (`for event in feed`), as the async one
/// is a stream: the message, the drop, the failed attempt, the last attempt's error and
/// `GaveUp`, then nothing; after `close`, nothing at once.
#[test]
fn reconnecting_is_an_iterator_that_ends_once_reconnecting_gives_up() {
    let (url, server, policy) = feed_that_goes_away();
    let mut feed = builder(&url).connect_reconnecting(policy).unwrap();
    feed.subscribe("subscribe:ticker").unwrap();
    let events: Vec<_> = feed.by_ref().collect();
    assert_ticked_then_gave_up(&events);
    assert!(feed.next().is_none());
    server.join().unwrap();

    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_on(listener);
    let mut feed = builder(&format!("ws://{addr}/"))
        .connect_reconnecting(Reconnect::new())
        .unwrap();
    feed.send("hello").unwrap();
    assert!(matches!(feed.next(),
        Some(Ok(Event::Message(m))) if m.as_text() == Some("hello")));
    feed.close(None).unwrap();
    assert!(feed.next().is_none());
    server.join().unwrap();
}

/// The async client is a stream of its events (`while let Some(event) = feed.next().await`):
/// the message, the drop and the failed attempt come as from `next_event`, then the last
/// attempt's error and `GaveUp`, and then the stream ends, as it does (at once) after
/// `close`.
#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnecting_is_a_stream_that_ends_once_reconnecting_gives_up() {
    use futures_util::stream::{FusedStream, StreamExt};
    let (url, server, policy) = feed_that_goes_away();
    let mut feed = builder(&url)
        .connect_reconnecting_async(policy)
        .await
        .unwrap();
    feed.subscribe("subscribe:ticker").await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = feed.next().await {
        events.push(event);
    }
    assert!(feed.is_terminated() && feed.has_given_up());
    assert_ticked_then_gave_up(&events);
    assert!(feed.next().await.is_none());
    assert!(matches!(
        feed.next_event().await,
        Err(Error::GaveUp { attempts: 2 })
    ));
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();

    // Closed by the caller: the stream is over too.
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = echo_on(listener);
    let mut feed = builder(&format!("ws://{addr}/"))
        .connect_reconnecting_async(Reconnect::new())
        .await
        .unwrap();
    feed.send("hello").await.unwrap();
    assert!(matches!(feed.next().await,
        Some(Ok(Event::Message(m))) if m.as_text() == Some("hello")));
    assert!(!feed.is_terminated());
    feed.close(None).await.unwrap();
    assert!(feed.is_terminated());
    assert!(feed.next().await.is_none());
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[test]
fn both_reconnecting_clients_can_be_shared_and_sent() {
    fn shared_and_sent<T: Send + Sync>() {}
    shared_and_sent::<wsc::Reconnecting>();
    #[cfg(feature = "tokio")]
    shared_and_sent::<wsc::tokio::Reconnecting>();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_attempt_survives_a_select_with_a_timer_shorter_than_the_handshake() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    // The first connection dies at once; every later one answers its handshake after 300 ms.
    thread::spawn(move || {
        for (n, tcp) in listener.incoming().enumerate() {
            let Ok(tcp) = tcp else { return };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            thread::spawn(move || {
                if n > 0 {
                    thread::sleep(Duration::from_millis(300));
                }
                let Ok(mut ws) = wsc::server::accept(tcp) else {
                    return;
                };
                if n > 0 {
                    let _ = ws.send_text("back");
                    let _ = ws.read();
                }
            });
        }
    });
    let (mut feed, dropped) = async_feed_past_its_first_drop(&url, 50).await;
    loop {
        tokio::select! {
            event = feed.next_event() => match event {
                Ok(Event::Reconnected(r)) => {
                    assert_eq!(r.attempts, 1, "{r:?}");
                    break;
                }
                other => panic!("expected the reconnect, got {other:?}"),
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                // Looking at (or changing) the subscriptions meanwhile restarts nothing.
                let _ = feed.subscriptions_mut();
            }
        }
        // Each cancelled call used to abandon its attempt and start another at once.
        assert!(dropped.elapsed() < Duration::from_secs(3), "no reconnect");
    }
    assert!(matches!(feed.next_event().await,
        Ok(Event::Message(m)) if m.as_text() == Some("back")));
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "one connection, one reconnect"
    );
    feed.close(None).await.unwrap();
}

/// A server that closes with `code` and `reason` (raw frame), reads the client's reply and
/// holds TCP open 400 ms more, checking that nothing follows the reply (no second close
/// frame); returns its URL.
#[cfg(feature = "tokio")]
fn closes_then_holds(code: u16, reason: &'static str) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut tcp = wsc::server::accept(tcp).unwrap().into_inner();
        let mut close = vec![0x88, 2 + reason.len() as u8];
        close.extend_from_slice(&code.to_be_bytes());
        close.extend_from_slice(reason.as_bytes());
        tcp.write_all(&close).unwrap();
        let mut reply = [0u8; 16];
        let n = tcp.read(&mut reply).unwrap();
        assert!(n >= 2 && reply[0] == 0x88, "{:?}", &reply[..n]);
        tcp.set_read_timeout(Some(Duration::from_millis(400)))
            .unwrap();
        let n = tcp.read(&mut reply).unwrap_or(0);
        assert_eq!(n, 0, "{:?}", &reply[..n]);
    });
    (url, server)
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_cancelled_while_the_servers_close_winds_up_keeps_the_close() {
    let (url, server) = closes_then_holds(1001, "restart");
    let mut feed = builder(&url)
        .connect_reconnecting_async(Reconnect::new())
        .await
        .unwrap();
    let mut ticks = 0;
    let event = loop {
        tokio::select! {
            event = feed.next_event() => break event,
            _ = tokio::time::sleep(Duration::from_millis(50)) => ticks += 1,
        }
    };
    match event {
        Ok(Event::Disconnected(Disconnect::Closed(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::GOING_AWAY);
            assert_eq!(frame.reason, "restart");
        }
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(
        ticks >= 3,
        "{ticks} ticks: the close was not wound up while cancelled"
    );
    feed.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_closed_after_a_cancelled_wind_up_returns_the_servers_close() {
    let (url, server) = closes_then_holds(1001, "restart");
    let mut feed = builder(&url)
        .connect_reconnecting_async(Reconnect::new())
        .await
        .unwrap();
    // Cancelled once the server's close is in, while its TCP close is waited for.
    let waited = tokio::time::timeout(Duration::from_millis(150), feed.next_event()).await;
    assert!(waited.is_err(), "{waited:?}");
    // Closing now winds that connection up: the server's close, not one of ours.
    let closed = feed.close(None).await.unwrap();
    let frame = closed.expect("the server's close frame");
    assert_eq!(frame.code, CloseCode::GOING_AWAY);
    assert_eq!(frame.reason, "restart");
    assert!(matches!(
        feed.next_event().await,
        Err(Error::ConnectionClosed)
    ));
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

/// Answers every connection with a redirect to `location` (formatted with its own address).
fn redirector(status: u16, location: impl Fn(SocketAddr) -> String + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status} Moved\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
                location(addr)
            );
            let _ = tcp.write_all(head.as_bytes());
        }
    });
    addr
}

/// Accepts one WebSocket connection and returns its request (path and headers).
fn recording_server() -> (
    SocketAddr,
    thread::JoinHandle<wsc::proto::handshake::Request>,
) {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let (mut ws, request) = wsc::server::Acceptor::new().accept(tcp).unwrap();
        while ws.read().is_ok() {}
        request
    });
    (addr, handle)
}

#[test]
fn redirects_are_followed_when_allowed_and_credentials_stay_behind() {
    let (target, server) = recording_server();
    let hop = redirector(307, move |_| format!("ws://{target}/moved?x=1"));
    let url = format!("ws://{hop}/old");

    let err = builder(&url).connect().unwrap_err();
    assert!(err.to_string().contains("redirect"), "{err}");
    assert!(err.to_string().contains("/moved?x=1"), "{err}");

    let mut ws = builder(&url)
        .max_redirects(2)
        .header("Authorization", "Bearer secret")
        .header("Proxy-Authorization", "Basic cHJveHk=")
        .header("Cookie", "session=c00kie")
        .header("X-Kept", "yes")
        .connect()
        .unwrap();
    let hops = &ws.response().unwrap().redirects;
    assert_eq!(hops.len(), 1, "{hops:?}");
    assert_eq!(hops[0].from, format!("ws://{hop}/old"));
    assert_eq!(hops[0].status, 307);
    assert_eq!(hops[0].to, format!("ws://{target}/moved?x=1"));
    ws.close_and_wait(None).unwrap();
    let request = server.join().unwrap();
    assert_eq!(request.path, "/moved?x=1");
    for secret in ["authorization", "proxy-authorization", "cookie"] {
        assert!(
            request.headers.get(secret).is_none(),
            "{secret} followed a redirect to another origin"
        );
    }
    assert_eq!(request.headers["x-kept"], "yes");
}

#[test]
fn redirect_loops_stop_at_the_limit() {
    let looping = redirector(302, |own| format!("http://{own}/again"));
    let err = builder(&format!("ws://{looping}/"))
        .max_redirects(3)
        .connect()
        .unwrap_err();
    match err {
        Error::Redirect(RedirectError::TooMany { max: 3, location }) => {
            assert!(location.ends_with("/again"), "{location}")
        }
        other => panic!("expected too many redirects, got {other}"),
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_redirects_are_followed() {
    let (target, server) = recording_server();
    let second = redirector(308, move |_| format!("ws://{target}/final"));
    let first = redirector(302, move |_| format!("ws://{second}/step"));
    let (mut ws, response) = builder(&format!("ws://{first}/start"))
        .max_redirects(5)
        .connect_async()
        .await
        .unwrap();
    let hops: Vec<_> = response
        .redirects
        .iter()
        .map(|h| (h.from.as_str(), h.status.as_u16(), h.to.as_str()))
        .collect();
    assert_eq!(
        hops,
        [
            (
                format!("ws://{first}/start").as_str(),
                302,
                format!("ws://{second}/step").as_str()
            ),
            (
                format!("ws://{second}/step").as_str(),
                308,
                format!("ws://{target}/final").as_str()
            ),
        ]
    );
    ws.close(None).await.unwrap();
    let request = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert_eq!(request.path, "/final");
}

#[test]
fn a_host_without_addresses_fails_at_once() {
    for timeout in [None, Some(Duration::from_secs(5))] {
        let start = Instant::now();
        let err = builder("ws://nowhere.test/")
            .connect_timeout(timeout)
            .resolve("nowhere.test", [])
            .connect()
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}

/// After the handshake, answers each ping with a text message at once and the pong 50 ms
/// later: a healthy peer whose pong sits behind other data. Raw frames, to control the order.
fn data_then_pong_server() -> String {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut tcp = wsc::server::accept(tcp).unwrap().into_inner();
        loop {
            // Client frames here are small and masked: 2 header bytes, 4 key bytes, payload.
            let mut head = [0u8; 2];
            if tcp.read_exact(&mut head).is_err() {
                return;
            }
            let mut rest = vec![0u8; 4 + usize::from(head[1] & 0x7f)];
            if tcp.read_exact(&mut rest).is_err() {
                return;
            }
            let (key, masked) = rest.split_at(4);
            let payload: Vec<u8> = masked
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            match head[0] & 0x0f {
                0x9 => {
                    tcp.write_all(&[0x81, 4, b'd', b'a', b't', b'a']).unwrap();
                    thread::sleep(Duration::from_millis(50));
                    let mut pong = vec![0x8a, payload.len() as u8];
                    pong.extend_from_slice(&payload);
                    tcp.write_all(&pong).unwrap();
                }
                0x8 => return,
                _ => {}
            }
        }
    });
    url
}

#[test]
fn keepalive_does_not_fail_a_slow_reader_whose_pong_is_waiting() {
    let url = data_then_pong_server();
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(1000));
    let mut ws = builder(&url).keepalive(keepalive).connect().unwrap();
    assert_eq!(ws.read().unwrap().as_text(), Some("data"));
    // A slow consumer: the pong came long ago but has not been read, and its deadline
    // (a timeout after the ping) has passed.
    thread::sleep(Duration::from_millis(1500));
    match ws.read() {
        Ok(Message::Pong(_)) => {}
        other => panic!("a healthy peer was declared dead: {other:?}"),
    }
}

/// After the handshake, sends one 2 MB binary frame in 64 KiB pieces every 120 ms (about
/// 3.8 s in all, several pong timeouts of 1 s), reading nothing meanwhile; then answers the
/// pings that came (automatically) while it waits for the close. A healthy peer whose pongs
/// are queued behind a big message.
fn trickling_server() -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        const LEN: usize = 2 << 20;
        let mut head = vec![0x82, 127];
        head.extend_from_slice(&(LEN as u64).to_be_bytes());
        ws.get_mut().write_all(&head).unwrap();
        let piece = vec![7u8; 64 << 10];
        for _ in 0..LEN / piece.len() {
            ws.get_mut().write_all(&piece).unwrap();
            thread::sleep(Duration::from_millis(120));
        }
        while ws.read().is_ok() {}
    });
    (url, handle)
}

#[test]
fn keepalive_waits_for_a_pong_behind_a_big_message() {
    let (url, server) = trickling_server();
    // A timeout far above the gaps between pieces, which a busy machine can stretch.
    let keepalive = Keepalive::new(Duration::from_millis(300), Duration::from_millis(1000));
    let mut ws = builder(&url).keepalive(keepalive).connect().unwrap();
    let start = Instant::now();
    let message = loop {
        match ws.read() {
            Ok(Message::Binary(data)) => break data,
            Ok(_) => {}
            Err(e) => panic!("a peer sending data was declared dead: {e}"),
        }
    };
    assert_eq!(message.len(), 2 << 20);
    assert!(
        start.elapsed() > Duration::from_millis(3000),
        "trickled too fast"
    );
    ws.close_and_wait(None).unwrap();
    server.join().unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_keepalive_waits_for_a_pong_behind_a_big_message() {
    let (url, server) = trickling_server();
    let keepalive = Keepalive::new(Duration::from_millis(300), Duration::from_millis(1000));
    let (mut ws, _) = builder(&url)
        .keepalive(keepalive)
        .connect_async()
        .await
        .unwrap();
    let message = loop {
        match ws.recv().await {
            Some(Ok(Message::Binary(data))) => break data,
            Some(Ok(_)) => {}
            other => panic!("a peer sending data was declared dead: {other:?}"),
        }
    };
    assert_eq!(message.len(), 2 << 20);
    ws.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[cfg(target_os = "linux")] // socket2
/// A server that floods pings for `flood` and reads nothing (so the client's pongs, and its
/// keepalive ping behind them, fill the path to it), then sends "done" and stays open until
/// the client is done (closing with unread data would reset the connection).
fn ping_flooder(flood: Duration) -> (String, std::sync::mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (done, client_done) = std::sync::mpsc::channel();
    let listener = TcpListener::bind((V4, 0)).unwrap();
    // A small window (inherited by the accepted socket): the pongs fill it at once.
    socket2::SockRef::from(&listener)
        .set_recv_buffer_size(4096)
        .unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut tcp = wsc::server::accept(tcp).unwrap().into_inner();
        let burst = [0x89, 4, b'p', b'i', b'n', b'g'].repeat(1000);
        let start = Instant::now();
        while start.elapsed() < flood {
            tcp.write_all(&burst).unwrap();
        }
        tcp.write_all(&[0x81, 4, b'd', b'o', b'n', b'e']).unwrap();
        let _ = client_done.recv_timeout(Duration::from_secs(30));
    });
    (url, done, handle)
}

/// Reads pings until "done"; how many.
#[cfg(target_os = "linux")]
fn pings_until_done(ws: &mut wsc::WebSocket<wsc::MaybeTlsStream>) -> Result<usize, Error> {
    let mut pings = 0;
    loop {
        match ws.read()? {
            Message::Ping(_) => pings += 1,
            Message::Text(t) if t == "done" => return Ok(pings),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
#[cfg(target_os = "linux")] // socket2
fn keepalive_keeps_a_peer_that_floods_pings_and_reads_nothing() {
    // Pings keep arriving long past several keepalive timeouts: the peer is alive, though
    // our keepalive ping cannot be written (the peer does not read our pongs). A timeout
    // far above the gaps a busy machine can put in the flood.
    let (url, done, server) = ping_flooder(Duration::from_millis(3500));
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(1000));
    let mut ws = builder(&url).keepalive(keepalive).connect().unwrap();
    socket2::SockRef::from(ws.get_ref().tcp())
        .set_send_buffer_size(4096)
        .unwrap();
    let pings = pings_until_done(&mut ws);
    done.send(()).unwrap();
    assert!(pings.unwrap() > 1000);
    server.join().unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
#[cfg(target_os = "linux")] // socket2
async fn async_keepalive_keeps_a_peer_that_floods_pings_and_reads_nothing() {
    let (url, done, server) = ping_flooder(Duration::from_millis(3500));
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(1000));
    let (mut ws, _) = builder(&url)
        .keepalive(keepalive)
        .connect_async()
        .await
        .unwrap();
    let mut pings = 0;
    loop {
        match ws.recv().await.unwrap().unwrap() {
            Message::Ping(_) => pings += 1,
            Message::Text(t) if t == "done" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    done.send(()).unwrap();
    assert!(pings > 1000, "{pings}");
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

/// Fills the path to the peer behind the client's back, as unacknowledged data to a dead
/// peer would.
fn fill_the_path(ws: &wsc::WebSocket<wsc::MaybeTlsStream>) {
    let tcp = ws.get_ref().tcp().try_clone().unwrap();
    tcp.set_nonblocking(true).unwrap();
    let junk = [0u8; 65536];
    while (&tcp).write(&junk).is_ok() {}
    tcp.set_nonblocking(false).unwrap();
}

#[test]
fn keepalive_is_not_held_up_by_a_full_send_buffer() {
    let (url, server) = unresponsive_server();
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(1000));
    let mut ws = builder(&url).keepalive(keepalive).connect().unwrap();
    fill_the_path(&ws);
    let start = Instant::now();
    match ws.read() {
        Err(Error::KeepaliveTimeout(_)) => {}
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    server.join().unwrap();
}

#[test]
fn keepalive_ends_a_read_held_by_queued_output_the_peer_never_takes() {
    // No write timeout (the default): only keepalive can tell that the peer is gone while
    // the read first tries to write what `queue` left.
    let (url, server) = unresponsive_server();
    let keepalive = Keepalive::new(Duration::from_millis(200), Duration::from_millis(1000));
    let mut ws = builder(&url).keepalive(keepalive).connect().unwrap();
    fill_the_path(&ws);
    ws.queue(Message::text("subscribe")).unwrap();
    let start = Instant::now();
    match ws.read() {
        Err(Error::KeepaliveTimeout(_)) => {}
        other => panic!("expected a keepalive timeout, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    server.join().unwrap();
}

#[test]
fn with_keepalive_on_the_write_timeout_still_ends_a_read_held_by_queued_output() {
    // The write timeout (500 ms) ends well before keepalive would (30 s + 10 s): the read
    // must report it, as without keepalive, and the connection stay usable.
    // A server that reads nothing, with a small receive buffer: what it can hold is soon
    // full (loopback's autotuning would otherwise take tens of MB).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    socket.bind(&SocketAddr::from((V4, 0)).into()).unwrap();
    socket.listen(1).unwrap();
    let listener = TcpListener::from(socket);
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let ws = wsc::server::accept(tcp).unwrap();
        thread::sleep(Duration::from_secs(3));
        drop(ws);
    });
    let keepalive = Keepalive::new(Duration::from_secs(30), Duration::from_secs(10));
    let mut ws = builder(&url)
        .uncompressed()
        .keepalive(keepalive)
        .write_timeout(Duration::from_millis(500))
        .connect()
        .unwrap();
    // More than the sockets hold.
    ws.queue(Message::binary(vec![0u8; 8 << 20])).unwrap();
    let start = Instant::now();
    match ws.read() {
        Err(Error::Timeout(Phase::Write)) => {}
        other => panic!("expected the write timeout, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    server.join().unwrap();
}

/// Answers the client's close after `delay`, then closes TCP.
#[cfg(feature = "tokio")]
fn slow_closer(delay: Duration) -> String {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut tcp = wsc::server::accept(tcp).unwrap().into_inner();
        let mut buf = [0u8; 64];
        let _ = tcp.read(&mut buf);
        thread::sleep(delay);
        tcp.write_all(&[0x88, 2, 0x03, 0xe8]).unwrap();
    });
    url
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn the_idle_read_timeout_does_not_cut_the_close_short() {
    let options = |url: &str| {
        builder(url)
            .read_timeout(Some(Duration::from_millis(200)))
            .close_timeout(Some(Duration::from_secs(3)))
    };
    let url = slow_closer(Duration::from_millis(500));
    let blocking = tokio::task::spawn_blocking(move || {
        let mut ws = options(&url).connect().unwrap();
        ws.close_and_wait(None)
    });
    let frame = blocking.await.unwrap().unwrap();
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::NORMAL));

    let url = slow_closer(Duration::from_millis(500));
    let (mut ws, _) = options(&url).connect_async().await.unwrap();
    let frame = ws.close(None).await.unwrap();
    assert_eq!(frame.map(|f| f.code), Some(CloseCode::NORMAL));
}

#[test]
fn the_server_role_answers_too_many_request_headers_with_431() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        wsc::server::accept(tcp).map(|_| ()).unwrap_err()
    });
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    write!(
        tcp,
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{many}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "{}",
        answer.lines().next().unwrap_or("")
    );
    let err = server.join().unwrap();
    assert!(
        matches!(
            err,
            Error::Handshake(wsc::HandshakeError::TooManyHeaders { max: 100 })
        ),
        "{err:?}"
    );
}

/// Reads a little of what the client sends, then says why it is leaving (a text and a close
/// 1008) and drops the connection with the client's data unread, which resets it: an
/// exchange kicking a client that sends too much.
fn kicking_server() -> (String, thread::JoinHandle<()>) {
    kicking_server_after(None)
}

/// [`kicking_server`], kicking only once `go` says so (if given).
fn kicking_server_after(
    go: Option<std::sync::mpsc::Receiver<()>>,
) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        // Else Nagle may hold the close back until the reset discards it.
        tcp.set_nodelay(true).unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        assert!(ws.read().unwrap().is_data());
        if let Some(go) = go {
            go.recv().unwrap();
        }
        ws.send_text("last words").unwrap();
        ws.send(Message::Close(Some(CloseFrame::new(
            CloseCode::POLICY_VIOLATION,
            "rate limit exceeded",
        ))))
        .unwrap();
        thread::sleep(Duration::from_millis(100));
    });
    (url, handle)
}

#[test]
fn a_read_whose_write_finds_the_server_gone_still_gets_what_it_sent_before() {
    let (go, kick) = std::sync::mpsc::channel();
    let (url, server) = kicking_server_after(Some(kick));
    let mut ws = builder(&url)
        .uncompressed()
        .write_timeout(Some(Duration::from_millis(50)))
        .connect()
        .unwrap();
    let chunk = vec![7u8; 256 << 10];
    let error = (0..4000)
        .find_map(|_| ws.send_binary(&chunk).err())
        .expect("the server stopped reading: a send must time out");
    assert!(matches!(error, Error::Timeout(Phase::Write)), "{error:?}");
    go.send(()).unwrap();
    // The server has sent all and reset the connection once it ends, and the reset has come
    // once the socket says so; then the read first writes what is queued.
    server.join().unwrap();
    wait_for_the_reset(ws.get_ref().tcp());
    assert_eq!(ws.read().unwrap().as_text(), Some("last words"));
    match ws.read() {
        Ok(Message::Close(close)) => assert_kicked(close),
        other => panic!("expected the server's close, got {other:?}"),
    }
}

/// Waits until the peer's reset has reached `tcp`.
#[cfg(target_os = "linux")]
fn wait_for_the_reset(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    common::wait_for_reset(tcp.as_raw_fd());
}

/// Elsewhere, a wait long enough on an idle machine.
#[cfg(not(target_os = "linux"))]
fn wait_for_the_reset(_: &TcpStream) {
    thread::sleep(Duration::from_millis(400));
}

#[test]
fn close_and_wait_after_the_server_went_gets_its_close() {
    let (url, server) = kicking_server();
    let mut ws = builder(&url).uncompressed().connect().unwrap();
    let chunk = vec![7u8; 256 << 10];
    let error = (0..4000).find_map(|_| ws.send_binary(&chunk).err());
    assert!(matches!(error, Some(Error::ConnectionReset)), "{error:?}");
    assert_kicked(ws.close_and_wait(None).unwrap());
    server.join().unwrap();
}

/// The close the kicking server sent.
fn assert_kicked(close: Option<CloseFrame>) {
    let close = close.expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::POLICY_VIOLATION);
    assert_eq!(close.reason, "rate limit exceeded");
}

#[test]
fn a_failed_send_loses_nothing_the_server_sent_before_it_reset() {
    let (url, server) = kicking_server();
    // Uncompressed: the socket fills up (the server reads one message, then nothing).
    let mut ws = builder(&url).uncompressed().connect().unwrap();
    let chunk = vec![7u8; 256 << 10];
    let error = (0..4000)
        .find_map(|_| ws.send_binary(&chunk).err())
        .expect("the server stopped reading: a send must fail");
    assert!(matches!(error, Error::ConnectionReset), "{error:?}");
    assert!(!ws.can_send());
    assert!(matches!(ws.send_text("more"), Err(Error::ConnectionClosed)));
    // Still read: what the server said before it went.
    assert_eq!(ws.read().unwrap().as_text(), Some("last words"));
    match ws.read() {
        Ok(Message::Close(close)) => assert_kicked(close),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    server.join().unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_a_failed_send_loses_nothing_the_server_sent_before_it_reset() {
    let (url, server) = kicking_server();
    let (mut ws, _) = builder(&url).uncompressed().connect_async().await.unwrap();
    let chunk = bytes::Bytes::from(vec![7u8; 256 << 10]);
    let mut error = None;
    for _ in 0..4000 {
        if let Err(e) = ws.send_binary(chunk.clone()).await {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the server stopped reading: a send must fail");
    assert!(matches!(error, Error::ConnectionReset), "{error:?}");
    assert!(ws.send_text("more").await.is_err());
    assert_eq!(
        ws.recv().await.unwrap().unwrap().as_text(),
        Some("last words")
    );
    match ws.recv().await {
        Some(Ok(Message::Close(close))) => assert_kicked(close),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert!(ws.recv().await.is_none());
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[test]
fn the_read_timeout_counts_from_the_start_of_the_wait_with_keepalive_on() {
    let (url, server) = unresponsive_server();
    let keepalive = Keepalive::new(Duration::from_millis(900), Duration::from_secs(10));
    let mut ws = builder(&url)
        .keepalive(keepalive)
        .read_timeout(Some(Duration::from_millis(1000)))
        .connect()
        .unwrap();
    let start = Instant::now();
    match ws.read() {
        Err(Error::Timeout(Phase::Read)) => {}
        other => panic!("expected a read timeout, got {other:?}"),
    }
    // Not restarted by the ping at 900 ms (which would make it 1.9 s).
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_millis(1750), "{took:?}");
    drop(ws);
    server.join().unwrap();
}

/// Listens again on `addr`, released a moment ago: another test's outgoing connection may
/// hold it as its local port for a while (ports of either kind come from the same range).
fn bind_again(addr: std::net::SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr) {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot listen on {addr} again: {e}"),
        }
    }
}

/// A feed server for two connections on `listener`: the first sends `tick 1`, then nothing
/// (stuck), and answers the client's close once it reads it, `pause` after `tick 1`; the
/// second sends `tick 2`. Each tick follows the connection's subscription. Returns the close
/// frame the first connection got.
fn stuck_then_fresh(
    listener: TcpListener,
    pause: Duration,
) -> thread::JoinHandle<Option<CloseFrame>> {
    thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        let subscription = ws.read().unwrap();
        ws.send_text(&format!("tick 1 after {}", subscription.as_text().unwrap()))
            .unwrap();
        // Silent from here; the close reply goes out as the client's close is read.
        thread::sleep(pause);
        let got = loop {
            match ws.read() {
                Ok(Message::Close(frame)) => break frame,
                Ok(_) => {}
                Err(e) => panic!("the client's close, not {e}"),
            }
        };
        drop(ws);
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = wsc::server::accept(tcp).unwrap();
        let subscription = ws.read().unwrap();
        ws.send_text(&format!("tick 2 after {}", subscription.as_text().unwrap()))
            .unwrap();
        while ws.read().is_ok() {}
        got
    })
}

#[test]
fn reconnect_replaces_a_connection_gone_silent_with_a_close_and_a_new_one() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = stuck_then_fresh(listener, Duration::from_millis(500));
    let mut feed = builder(&format!("ws://{addr}/feed"))
        .connect_reconnecting(Reconnect::new().initial_delay(Duration::from_millis(50)))
        .unwrap();
    feed.subscribe("subscribe:ticker").unwrap();
    assert!(matches!(feed.next_event().unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    // A read deadline already past (as a loop that looks at a flag sets them) does not cut
    // the wait for the server's answer short: it comes once the server reads, 500 ms after
    // its tick.
    feed.set_read_deadline(Some(Instant::now()));
    let idle = CloseFrame::new(CloseCode::GOING_AWAY, "no data");
    let started = Instant::now();
    match feed.reconnect(Some(idle.clone())) {
        Ok(Some(Event::Disconnected(Disconnect::Replaced(Some(frame))))) => assert_eq!(frame, idle),
        other => panic!("expected the replaced connection's drop, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(feed.get_ref().is_none());
    feed.set_read_deadline(None);
    assert!(matches!(feed.next_event().unwrap(), Event::Reconnected(_)));
    assert!(matches!(feed.next_event().unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 2 after subscribe:ticker")));
    feed.close(None).unwrap();
    assert_eq!(server.join().unwrap(), Some(idle));
    // Nothing open, nothing to replace.
    assert!(matches!(feed.reconnect(None), Ok(None)));
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_replaces_a_connection_gone_silent_with_a_close_and_a_new_one() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = stuck_then_fresh(listener, Duration::ZERO);
    let mut feed = builder(&format!("ws://{addr}/feed"))
        .connect_reconnecting_async(Reconnect::new().initial_delay(Duration::from_millis(50)))
        .await
        .unwrap();
    feed.subscribe("subscribe:ticker").await.unwrap();
    assert!(matches!(feed.next_event().await.unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 1 after subscribe:ticker")));
    let idle = CloseFrame::new(CloseCode::GOING_AWAY, "no data");
    match feed.reconnect(Some(idle.clone())).await {
        Ok(Some(Event::Disconnected(Disconnect::Replaced(Some(frame))))) => assert_eq!(frame, idle),
        other => panic!("expected the replaced connection's drop, got {other:?}"),
    }
    assert!(feed.get_ref().is_none());
    assert!(matches!(
        feed.next_event().await.unwrap(),
        Event::Reconnected(_)
    ));
    assert!(matches!(feed.next_event().await.unwrap(),
        Event::Message(m) if m.as_text() == Some("tick 2 after subscribe:ticker")));
    feed.close(None).await.unwrap();
    let got = tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
    assert_eq!(got, Some(idle));
    assert!(matches!(feed.reconnect(None).await, Ok(None)));
}

/// Accepts WebSocket connections on `listener` one after another, sends nothing, and answers
/// each client's close; counts the connections until the listener's owner stops calling.
fn silent_server(listener: TcpListener) {
    thread::spawn(move || {
        while let Ok((tcp, _)) = listener.accept() {
            let Ok(mut ws) = wsc::server::accept(tcp) else {
                continue;
            };
            while ws.read().is_ok() {}
        }
    });
}

#[test]
fn a_frame_that_cannot_be_sent_keeps_the_connection_and_one_never_heard_from_counts_as_short() {
    let listener = TcpListener::bind((V4, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    silent_server(listener);
    // Stable after 1 ms: only the rule for connections that never sent a message can make
    // these replacements count toward max_attempts.
    let policy = Reconnect::new()
        .initial_delay(Duration::from_millis(10))
        .stable_after(Duration::from_millis(1))
        .max_attempts(Some(1));
    let mut feed = builder(&format!("ws://{addr}/"))
        .connect_reconnecting(policy)
        .unwrap();
    // 1005 may not be sent, nor a reason over 123 bytes: an error, and nothing closed.
    for frame in [
        CloseFrame::new(1005, ""),
        CloseFrame::new(CloseCode::GOING_AWAY, "x".repeat(124)),
    ] {
        assert!(matches!(
            feed.reconnect(Some(frame)),
            Err(Error::InvalidInput(_))
        ));
        assert!(feed.get_ref().is_some_and(|ws| ws.can_send()));
    }
    for round in 0..2 {
        thread::sleep(Duration::from_millis(20));
        assert!(matches!(
            feed.reconnect(None),
            Ok(Some(Event::Disconnected(Disconnect::Replaced(None))))
        ));
        if round == 0 {
            // The first connection is no attempt of ours.
            assert!(!feed.has_given_up());
            assert!(matches!(feed.next_event().unwrap(), Event::Reconnected(_)));
        }
    }
    // Up 20 ms (past stable_after) but silent all along: short-lived, so max_attempts(1) is
    // reached.
    assert!(feed.has_given_up());
    let gave_up = feed.next_event();
    assert!(
        matches!(gave_up, Err(Error::GaveUp { attempts: 1 })),
        "{gave_up:?}"
    );
    assert!(gave_up
        .unwrap_err()
        .to_string()
        .starts_with("reconnecting gave up after 1 failed attempt in a row"));
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_reconnect_after_a_cancelled_wind_up_reports_the_servers_close() {
    let (url, server) = closes_then_holds(4001, "gone");
    let mut feed = builder(&url)
        .connect_reconnecting_async(Reconnect::new())
        .await
        .unwrap();
    // Cancelled once the server's close is in and the wind-up waits for its TCP close.
    let cancelled = tokio::time::timeout(Duration::from_millis(150), feed.next_event()).await;
    assert!(cancelled.is_err(), "{cancelled:?}");
    match feed
        .reconnect(Some(CloseFrame::new(CloseCode::GOING_AWAY, "")))
        .await
    {
        Ok(Some(Event::Disconnected(Disconnect::Closed(Some(frame))))) => {
            assert_eq!(
                (frame.code, frame.reason.as_str()),
                (CloseCode(4001), "gone")
            );
        }
        other => panic!("expected the server's close, got {other:?}"),
    }
    feed.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn async_keepalive_measures_the_round_trip_of_its_pings() {
    let (url, server) = pinged_server(Duration::from_millis(400));
    let keepalive = Keepalive::new(Duration::from_millis(50), Duration::from_millis(500));
    let (mut ws, _) = builder(&url)
        .keepalive(keepalive)
        .connect_async()
        .await
        .unwrap();
    assert_eq!(ws.latency(), None, "no pong yet");
    let mut pongs = 0;
    loop {
        match ws.recv().await.unwrap().unwrap() {
            Message::Pong(_) => {
                pongs += 1;
                let rtt = ws.latency().expect("a round trip once a pong is in");
                assert!(rtt < Duration::from_millis(500), "{rtt:?}");
            }
            Message::Text(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pongs >= 2, "only {pongs} pongs");
    // The reading half, where the pongs come in, tells it too.
    let rtt = ws.latency();
    let (reader, writer) = ws.split();
    assert_eq!(reader.latency(), rtt);
    let mut ws = reader.reunite(writer).unwrap();
    ws.close(None).await.unwrap();
    tokio::task::spawn_blocking(move || server.join().unwrap())
        .await
        .unwrap();
}
