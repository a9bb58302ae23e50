//! What the client tests share: a burst of server frames that mixes lent messages with control
//! frames and fragments, and how each message it yields is described; a burst of pings; a
//! client builder without compression on every feature set.
#![allow(dead_code)] // each test crate that includes this module uses part of it

use wsc::MessageRef;

/// Frames a raw server writes in one go (unmasked): 50 lent texts, a ping, a binary message
/// (with a 16-bit length), a fragmented text, one more text and the close; and the
/// descriptions (see [`describe`]) of what a client reads from them, in order.
pub fn mixed_burst() -> (Vec<u8>, Vec<String>) {
    fn frame(out: &mut Vec<u8>, head: u8, payload: &[u8]) {
        match u16::try_from(payload.len()) {
            Ok(n) if n < 126 => out.extend_from_slice(&[head, n as u8]),
            Ok(n) => {
                out.extend_from_slice(&[head, 126]);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => panic!("frames of up to 64 KiB only"),
        }
        out.extend_from_slice(payload);
    }
    let mut burst = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50u32 {
        frame(&mut burst, 0x81, format!("text {i}").as_bytes());
        expected.push(format!("text:text {i}"));
    }
    frame(&mut burst, 0x89, b"are you there");
    frame(&mut burst, 0x82, &[7u8; 300]);
    frame(&mut burst, 0x01, "frag".as_bytes());
    frame(&mut burst, 0x80, "mented é".as_bytes());
    frame(&mut burst, 0x81, b"after");
    frame(&mut burst, 0x88, &1000u16.to_be_bytes());
    expected.extend(
        [
            "ping:are you there",
            "binary:300",
            "text:fragmented é",
            "text:after",
            "close:Some(1000)",
        ]
        .map(String::from),
    );
    (burst, expected)
}

/// A message as the tests compare it.
pub fn describe(message: MessageRef<'_>) -> String {
    match message {
        MessageRef::Text(t) => format!("text:{t}"),
        MessageRef::Binary(b) => format!("binary:{}", b.len()),
        MessageRef::Ping(p) => format!("ping:{}", String::from_utf8_lossy(p)),
        MessageRef::Pong(_) => "pong".to_string(),
        MessageRef::Close(c) => format!("close:{:?}", c.map(|c| u16::from(c.code))),
    }
}

/// `count` pings with 125-byte payloads, as a server writes them (unmasked): for peers that
/// flood pings.
pub fn ping_burst(count: usize) -> Vec<u8> {
    let mut ping = vec![0x89, 125];
    ping.extend_from_slice(&[b'p'; 125]);
    ping.iter()
        .copied()
        .cycle()
        .take(ping.len() * count)
        .collect()
}

/// Turns permessage-deflate off on a client that would offer it: for tests that read or
/// write raw frames. Without the `deflate` feature it is never offered, and this does
/// nothing, so those tests build and run on every feature set.
pub trait Uncompressed {
    /// The builder, offering no compression.
    fn uncompressed(self) -> Self;
}

impl Uncompressed for wsc::ClientBuilder {
    fn uncompressed(self) -> Self {
        #[cfg(feature = "deflate")]
        return self.compression(false);
        #[cfg(not(feature = "deflate"))]
        self
    }
}

/// Whether the peer's reset has reached the socket `fd`: poll reports a hang-up, which a FIN
/// alone does not give. Polling neither waits, reads, nor takes the socket's pending error.
#[cfg(target_os = "linux")]
pub fn has_reset(fd: std::os::fd::RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd for an open socket (the caller's); no wait.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    poll.revents & libc::POLLHUP != 0
}

/// Waits (up to 10 s) until the peer's reset has reached the socket `fd` ([`has_reset`]).
#[cfg(target_os = "linux")]
pub fn wait_for_reset(fd: std::os::fd::RawFd) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !has_reset(fd) {
        assert!(
            std::time::Instant::now() < deadline,
            "the peer's reset never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
