//! What the connection hands out and takes in: messages, control frames, and checked text.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use super::close::CloseFrame;

/// Bytes that are known to be valid UTF-8, shared without copying (a [`Bytes`] underneath).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes after checking that they are UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps bytes that the caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Utf8Bytes(bytes)
    }

    /// A static string, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or receives already checked) UTF-8, and the bytes
        // are immutable afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes, sharing the same memory.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for String {
    fn from(text: Utf8Bytes) -> String {
        text.as_str().to_owned()
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A WebSocket message or control frame, received or to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A complete text message.
    Text(Utf8Bytes),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping. When received, the pong has already been queued.
    Ping(Bytes),
    /// A pong (solicited or not).
    Pong(Bytes),
    /// A close frame, with its code and reason if it had one.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(s: impl Into<Utf8Bytes>) -> Message {
        Message::Text(s.into())
    }

    /// A binary message.
    pub fn binary(b: impl Into<Bytes>) -> Message {
        Message::Binary(b.into())
    }

    /// The payload bytes (for a close, the reason).
    pub fn as_payload(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(frame)) => frame.reason.as_bytes(),
            Message::Close(None) => &[],
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// Whether this is a text or binary message (not a control frame).
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Whether this is a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// Whether this is a close frame.
    pub fn is_close(&self) -> bool {
        matches!(self, Message::Close(_))
    }

    /// Whether this is a ping.
    pub fn is_ping(&self) -> bool {
        matches!(self, Message::Ping(_))
    }

    /// Whether this is a pong.
    pub fn is_pong(&self) -> bool {
        matches!(self, Message::Pong(_))
    }

    /// The text, if this is a text message, without a copy.
    pub fn into_text(self) -> Option<Utf8Bytes> {
        match self {
            Message::Text(t) => Some(t),
            _ => None,
        }
    }

    /// The payload bytes (for a close, the reason), without a copy.
    pub fn into_payload(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(frame)) => frame.reason.into_bytes(),
            Message::Close(None) => Bytes::new(),
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s.into())
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b.into())
    }
}

impl From<Bytes> for Message {
    fn from(b: Bytes) -> Self {
        Message::Binary(b)
    }
}

/// A binary message, copied.
impl From<&[u8]> for Message {
    fn from(b: &[u8]) -> Self {
        Message::Binary(Bytes::copy_from_slice(b))
    }
}

/// One part of a text or binary message sent in parts, whose size need not be known up front
/// (see [`crate::WebSocket::send_part`]): `&str` converts to a text part, bytes to a binary
/// one. Text parts are whole UTF-8 each, so the message they make is too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessagePart<'a> {
    /// Text: every part of the message is text.
    Text(&'a str),
    /// Binary: every part of the message is binary.
    Binary(&'a [u8]),
}

impl<'a> From<&'a str> for MessagePart<'a> {
    fn from(text: &'a str) -> Self {
        MessagePart::Text(text)
    }
}

impl<'a> From<&'a String> for MessagePart<'a> {
    fn from(text: &'a String) -> Self {
        MessagePart::Text(text)
    }
}

impl<'a> From<&'a [u8]> for MessagePart<'a> {
    fn from(data: &'a [u8]) -> Self {
        MessagePart::Binary(data)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for MessagePart<'a> {
    fn from(data: &'a [u8; N]) -> Self {
        MessagePart::Binary(data)
    }
}

impl<'a> From<&'a Vec<u8>> for MessagePart<'a> {
    fn from(data: &'a Vec<u8>) -> Self {
        MessagePart::Binary(data)
    }
}

/// A message borrowed from the connection instead of copied out of it: the fast way to read
/// (see [`crate::WebSocket::read_ref`]). Valid until the next read; [`MessageRef::to_owned`]
/// keeps one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping (already answered).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame (already answered).
    Close(Option<&'a CloseFrame>),
}

impl<'a> MessageRef<'a> {
    /// The message, owned (its payload copied).
    pub fn to_owned(&self) -> Message {
        match *self {
            MessageRef::Text(t) => Message::Text(Utf8Bytes::from(t)),
            MessageRef::Binary(b) => Message::Binary(Bytes::copy_from_slice(b)),
            MessageRef::Ping(b) => Message::Ping(Bytes::copy_from_slice(b)),
            MessageRef::Pong(b) => Message::Pong(Bytes::copy_from_slice(b)),
            MessageRef::Close(frame) => Message::Close(frame.cloned()),
        }
    }

    /// The payload: the text's bytes, the binary data, or a control frame's payload (empty
    /// for a close).
    pub fn as_payload(&self) -> &'a [u8] {
        match *self {
            MessageRef::Text(t) => t.as_bytes(),
            MessageRef::Binary(b) | MessageRef::Ping(b) | MessageRef::Pong(b) => b,
            MessageRef::Close(_) => &[],
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&'a str> {
        match *self {
            MessageRef::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Whether this is a text or binary message (not a control frame).
    pub fn is_data(&self) -> bool {
        matches!(self, MessageRef::Text(_) | MessageRef::Binary(_))
    }
}

impl<'a> From<&'a Message> for MessageRef<'a> {
    fn from(message: &'a Message) -> Self {
        match message {
            Message::Text(t) => MessageRef::Text(t.as_str()),
            Message::Binary(b) => MessageRef::Binary(b),
            Message::Ping(b) => MessageRef::Ping(b),
            Message::Pong(b) => MessageRef::Pong(b),
            Message::Close(frame) => MessageRef::Close(frame.as_ref()),
        }
    }
}

/// Text from bytes that were validated as UTF-8 and have not changed since: the borrowing
/// counterpart of [`Utf8Bytes::from_validated`], without a second validation pass.
#[allow(unsafe_code)]
pub(crate) fn str_from_validated(bytes: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: callers pass bytes they validated as UTF-8 and could not have changed since
    // (the connection lends a staged payload only through `&self`, and every `&mut self`
    // method that touches the read buffer ends the loan first).
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CloseCode;

    #[test]
    fn kinds_and_owned_payloads() {
        let text = Message::text("héllo");
        assert!(text.is_text() && text.is_data() && !text.is_binary() && !text.is_close());
        assert_eq!(String::from(text.clone().into_text().unwrap()), "héllo");
        assert_eq!(text.into_payload(), Bytes::from_static("héllo".as_bytes()));

        let binary = Message::binary(vec![1u8, 2, 3]);
        assert!(binary.is_binary() && !binary.is_text());
        assert_eq!(binary.clone().into_text(), None);
        assert_eq!(binary.into_payload(), Bytes::from_static(&[1, 2, 3]));

        let close = Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, "bye")));
        assert!(close.is_close() && !close.is_data());
        assert_eq!(close.into_payload(), Bytes::from_static(b"bye"));
        assert_eq!(Message::Close(None).into_payload(), Bytes::new());
        assert_eq!(
            Message::Ping(Bytes::from_static(b"p")).into_payload(),
            Bytes::from_static(b"p")
        );
    }
}
