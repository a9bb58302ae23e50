//! Reading a TLS connection that failed on a record: the plaintext of the records before it
//! first, then its error.
//!
//! rustls decrypts every record one socket read brought in, good ones into its plaintext
//! buffer, and stops at the first bad one; the stream adapters (rustls' own `Stream`,
//! tokio-rustls) then return the error and leave that plaintext behind, and a later read
//! would wait on the socket before rustls repeats its error. The messages the peer sent
//! before the bad record would be lost, or delayed behind a wait.

use std::io::{self, Read};

use rustls::ClientConnection;

/// The error `conn` failed with, if it has: rustls keeps it and returns it from every later
/// `process_new_packets`. On a sound connection that call finds nothing new to process (the
/// adapters make it after every socket read), so this is cheap enough for every read.
pub(crate) fn failure(conn: &mut ClientConnection) -> Option<rustls::Error> {
    conn.process_new_packets().err()
}

/// After `failure`: reads what is left of the plaintext decrypted before it into `buf`, or,
/// once none is left, returns the error (as the adapters wrap it: `InvalidData` over the
/// `rustls::Error`), never touching the socket.
pub(crate) fn read_plaintext_left(
    conn: &mut ClientConnection,
    failure: rustls::Error,
    buf: &mut [u8],
) -> io::Result<usize> {
    match conn.reader().read(buf) {
        Ok(n) if n > 0 || buf.is_empty() => Ok(n),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, failure)),
    }
}

/// [`failure`] and [`read_plaintext_left`] in one: `None` while the connection is sound.
pub(crate) fn read_after_failure(
    conn: &mut ClientConnection,
    buf: &mut [u8],
) -> Option<io::Result<usize>> {
    let failure = failure(conn)?;
    Some(read_plaintext_left(conn, failure, buf))
}
