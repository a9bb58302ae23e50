//! SOCKS5 (RFC 1928) with user name/password authentication (RFC 1929), sans-I/O.
//!
//! [`Socks5`] is a state machine: the driver sends [`Socks5::greeting`], then repeatedly reads
//! exactly [`Socks5::needed`] bytes and hands them to [`Socks5::receive`], sending whatever it
//! returns, until it says [`Step::Done`]. Because the machine always knows the exact length of
//! the message it is waiting for (the final reply's length depends on its address type), the
//! driver never reads past the proxy's last byte, so nothing the server sends through the
//! tunnel is swallowed.

use std::fmt;
use std::net::IpAddr;

use super::proxy::{host_port, ProxyError};

/// The protocol version byte of every SOCKS5 message.
const VERSION: u8 = 0x05;
/// The version byte of the RFC 1929 sub-negotiation.
const AUTH_VERSION: u8 = 0x01;
/// Authentication methods.
const NO_AUTH: u8 = 0x00;
const USER_PASSWORD: u8 = 0x02;
const NO_ACCEPTABLE: u8 = 0xFF;
/// The CONNECT command.
const CONNECT: u8 = 0x01;
/// Address types.
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// What the proxy is asked to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An address (given as one, or resolved locally for `socks5://`).
    Ip(IpAddr),
    /// A host name for the proxy to resolve (`socks5h://`), at most 255 bytes.
    Name(String),
}

/// What the driver does after [`Socks5::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read [`Socks5::needed`] more bytes.
    NeedMore,
    /// Send these bytes to the proxy, then read [`Socks5::needed`] more bytes.
    Send(Vec<u8>),
    /// The tunnel is open: every byte from now on is the server's.
    Done,
}

/// The message being waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The method selection: VER METHOD.
    Method,
    /// The RFC 1929 status: VER STATUS.
    Auth,
    /// The start of the CONNECT reply: VER REP RSV ATYP.
    ReplyHead,
    /// The length byte of a domain-name bound address.
    ReplyDomainLen,
    /// The rest of the reply (bound address and port): this many bytes.
    ReplyRest(usize),
    /// The tunnel is open.
    Done,
}

impl State {
    /// The length of the message (or piece of it) this state waits for.
    fn len(self) -> usize {
        match self {
            State::Method | State::Auth => 2,
            State::ReplyHead => 4,
            State::ReplyDomainLen => 1,
            State::ReplyRest(n) => n,
            State::Done => 0,
        }
    }
}

/// A SOCKS5 negotiation for one CONNECT (`Debug` leaves the password out).
pub(crate) struct Socks5 {
    target: Target,
    port: u16,
    /// `host:port` as the user wrote it, for error messages.
    label: String,
    credentials: Option<(String, String)>,
    state: State,
    /// The bytes of the current piece received so far (at most 255 + 2).
    buf: Vec<u8>,
}

impl fmt::Debug for Socks5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = self
            .credentials
            .as_ref()
            .map(|(user, _)| (user, crate::proto::redact::REDACTED));
        f.debug_struct("Socks5")
            .field("target", &self.target)
            .field("port", &self.port)
            .field("label", &self.label)
            .field("credentials", &credentials)
            .field("state", &self.state)
            .field("buf", &self.buf)
            .finish()
    }
}

impl Socks5 {
    /// A negotiation for a tunnel to `host:port`. `resolved` is the address wsc looked up
    /// itself (`socks5://`; errors then name it too, as `host:port (address)`); without one, an IP literal `host` is sent as an address and a
    /// name is sent for the proxy to resolve. Names over 255 bytes and credentials over 255
    /// bytes cannot be encoded and are refused here, before anything is sent.
    pub(crate) fn new(
        host: &str,
        port: u16,
        resolved: Option<IpAddr>,
        credentials: Option<(&str, &str)>,
    ) -> Result<Socks5, ProxyError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let target = match resolved.or_else(|| bare.parse().ok()) {
            Some(ip) => Target::Ip(ip),
            None if bare.is_empty() || bare.len() > 255 => {
                return Err(ProxyError::Unsupported(format!(
                    "SOCKS5 carries host names of 1 to 255 bytes, not {}",
                    bare.len()
                )))
            }
            None => Target::Name(bare.to_string()),
        };
        if let Some((user, password)) = credentials {
            if user.len() > 255 || password.len() > 255 {
                return Err(ProxyError::CredentialsTooLong);
            }
        }
        // A name resolved here: which of its addresses failed matters when several are tried.
        let label = match resolved {
            Some(ip) if bare.parse::<IpAddr>().is_err() => {
                format!("{} ({ip})", host_port(bare, port))
            }
            _ => host_port(bare, port),
        };
        Ok(Socks5 {
            target,
            port,
            label,
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            state: State::Method,
            buf: Vec::with_capacity(8),
        })
    }

    /// The first message: the authentication methods offered (none, and user name/password
    /// when credentials are set).
    pub(crate) fn greeting(&self) -> Vec<u8> {
        if self.credentials.is_some() {
            vec![VERSION, 2, NO_AUTH, USER_PASSWORD]
        } else {
            vec![VERSION, 1, NO_AUTH]
        }
    }

    /// How many more bytes the current message needs: read exactly this many (0 once done).
    pub(crate) fn needed(&self) -> usize {
        self.state.len() - self.buf.len()
    }

    /// Whether our user name and password went out and their answer has not come.
    pub(crate) fn awaits_auth_answer(&self) -> bool {
        self.state == State::Auth
    }

    /// Whether the tunnel is open.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes received bytes: at most [`Socks5::needed`] of them are used, and the count used
    /// comes back with what to do next. Bytes beyond the current message are left to the
    /// caller (who, reading exactly `needed()`, never has any).
    pub(crate) fn receive(&mut self, input: &[u8]) -> Result<(usize, Step), ProxyError> {
        if self.state == State::Done {
            return Ok((0, Step::Done));
        }
        let used = input.len().min(self.needed());
        self.buf.extend_from_slice(&input[..used]);
        if self.needed() > 0 {
            return Ok((used, Step::NeedMore));
        }
        let piece = std::mem::take(&mut self.buf);
        let step = self.process(&piece)?;
        self.buf = piece;
        self.buf.clear();
        Ok((used, step))
    }

    /// Acts on a complete piece of the current state's length.
    fn process(&mut self, piece: &[u8]) -> Result<Step, ProxyError> {
        match (self.state, piece) {
            (State::Method, &[version, method]) => {
                check_version(version)?;
                match method {
                    NO_AUTH => self.send_connect(),
                    USER_PASSWORD if self.credentials.is_some() => {
                        self.state = State::Auth;
                        Ok(Step::Send(self.auth_request()))
                    }
                    NO_ACCEPTABLE => Err(ProxyError::Socks5NoAcceptableAuth {
                        offered_credentials: self.credentials.is_some(),
                    }),
                    other => Err(bad(format!(
                        "the SOCKS5 proxy chose authentication method {other:#04x}, which was \
                         not offered"
                    ))),
                }
            }
            (State::Auth, &[version, status]) => {
                // RFC 1929 says 0x01; some servers answer with the SOCKS version 0x05.
                if version != AUTH_VERSION && version != VERSION {
                    return Err(bad(format!(
                        "version {version:#04x} in the SOCKS5 authentication reply, expected 0x01"
                    )));
                }
                if status != 0 {
                    return Err(ProxyError::Socks5AuthFailed);
                }
                self.send_connect()
            }
            (State::ReplyHead, &[version, reply, reserved, atyp]) => {
                check_version(version)?;
                if reply != 0 {
                    return Err(ProxyError::Socks5Reply {
                        target: self.label.clone(),
                        code: reply,
                    });
                }
                if reserved != 0 {
                    return Err(bad(format!(
                        "reserved byte {reserved:#04x} in the SOCKS5 reply, expected 0x00"
                    )));
                }
                self.state = match atyp {
                    ATYP_IPV4 => State::ReplyRest(4 + 2),
                    ATYP_IPV6 => State::ReplyRest(16 + 2),
                    ATYP_DOMAIN => State::ReplyDomainLen,
                    other => {
                        return Err(bad(format!(
                            "unknown address type {other:#04x} in the SOCKS5 reply"
                        )))
                    }
                };
                Ok(Step::NeedMore)
            }
            (State::ReplyDomainLen, &[len]) => {
                self.state = State::ReplyRest(usize::from(len) + 2);
                Ok(Step::NeedMore)
            }
            (State::ReplyRest(_), _) => {
                // The bound address and port: not needed to use the tunnel.
                self.state = State::Done;
                Ok(Step::Done)
            }
            // `receive` hands over exactly `state.len()` bytes, so the patterns above are
            // exhaustive in practice.
            (state, piece) => Err(bad(format!(
                "internal error: {} bytes in SOCKS5 state {state:?}",
                piece.len()
            ))),
        }
    }

    /// Moves on to the CONNECT request.
    fn send_connect(&mut self) -> Result<Step, ProxyError> {
        self.state = State::ReplyHead;
        let mut req = Vec::with_capacity(7 + 255);
        req.extend_from_slice(&[VERSION, CONNECT, 0x00]);
        match &self.target {
            Target::Ip(IpAddr::V4(ip)) => {
                req.push(ATYP_IPV4);
                req.extend_from_slice(&ip.octets());
            }
            Target::Ip(IpAddr::V6(ip)) => {
                req.push(ATYP_IPV6);
                req.extend_from_slice(&ip.octets());
            }
            Target::Name(name) => {
                req.push(ATYP_DOMAIN);
                // Checked in `new`: 1 to 255 bytes.
                req.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
                req.extend_from_slice(name.as_bytes());
            }
        }
        req.extend_from_slice(&self.port.to_be_bytes());
        Ok(Step::Send(req))
    }

    /// The RFC 1929 request: VER ULEN UNAME PLEN PASSWD.
    fn auth_request(&self) -> Vec<u8> {
        let (user, password) = self
            .credentials
            .as_ref()
            .map(|(u, p)| (u.as_bytes(), p.as_bytes()))
            .unwrap_or_default();
        let mut req = Vec::with_capacity(3 + user.len() + password.len());
        req.push(AUTH_VERSION);
        // Checked in `new`: at most 255 bytes each.
        req.push(u8::try_from(user.len()).unwrap_or(u8::MAX));
        req.extend_from_slice(user);
        req.push(u8::try_from(password.len()).unwrap_or(u8::MAX));
        req.extend_from_slice(password);
        req
    }
}

/// Checks the VER byte of a SOCKS5 message, with a hint for the likeliest mistake: an HTTP
/// proxy configured as SOCKS5.
fn check_version(version: u8) -> Result<(), ProxyError> {
    match version {
        VERSION => Ok(()),
        b'H' => Err(bad(
            "the proxy answered in HTTP, not SOCKS5: it looks like an HTTP proxy (use http://)"
                .into(),
        )),
        other => Err(bad(format!(
            "version {other:#04x} in the reply, expected 0x05: is this a SOCKS5 proxy?"
        ))),
    }
}

/// A [`ProxyError::BadResponse`].
fn bad(why: String) -> ProxyError {
    ProxyError::BadResponse(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes and returns the steps that were not
    /// `NeedMore`, checking that no byte is consumed past the message.
    fn feed(s: &mut Socks5, input: &[u8], chunk: usize) -> Result<Vec<Step>, ProxyError> {
        let mut steps = Vec::new();
        let mut rest = input;
        while !rest.is_empty() {
            let n = chunk.min(rest.len()).min(s.needed().max(1));
            let (used, step) = s.receive(&rest[..n])?;
            assert!(used <= n);
            rest = &rest[used..];
            if step != Step::NeedMore {
                steps.push(step);
            }
            if s.is_done() {
                break;
            }
        }
        assert!(rest.is_empty(), "{} bytes left over", rest.len());
        Ok(steps)
    }

    fn connect_to_name(name: &str, port: u16) -> Vec<u8> {
        let mut v = vec![5, 1, 0, 3, name.len() as u8];
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&port.to_be_bytes());
        v
    }

    const IPV4_REPLY: [u8; 10] = [5, 0, 0, 1, 10, 0, 0, 1, 0x1F, 0x90];

    #[test]
    fn no_auth_with_a_host_name() {
        for chunk in [1, 2, 100] {
            let mut s = Socks5::new("example.com", 443, None, None).unwrap();
            assert_eq!(s.greeting(), [5, 1, 0]);
            assert_eq!(s.needed(), 2);
            let steps = feed(&mut s, &[5, 0], chunk).unwrap();
            assert_eq!(steps, [Step::Send(connect_to_name("example.com", 443))]);
            assert_eq!(s.needed(), 4);
            let steps = feed(&mut s, &IPV4_REPLY, chunk).unwrap();
            assert_eq!(steps, [Step::Done]);
            assert!(s.is_done());
            assert_eq!(s.needed(), 0);
        }
    }

    #[test]
    fn addresses_are_sent_as_addresses() {
        let mut s = Socks5::new("10.1.2.3", 80, None, None).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 0], 2).unwrap(),
            [Step::Send(vec![5, 1, 0, 1, 10, 1, 2, 3, 0, 80])]
        );
        let mut s = Socks5::new("[::1]", 0x1234, None, None).unwrap();
        let mut expected = vec![5, 1, 0, 4];
        expected.extend_from_slice(&[0; 15]);
        expected.extend_from_slice(&[1, 0x12, 0x34]);
        assert_eq!(feed(&mut s, &[5, 0], 2).unwrap(), [Step::Send(expected)]);
        // A locally resolved address replaces the name.
        let ip = "192.0.2.7".parse().unwrap();
        let mut s = Socks5::new("example.com", 443, Some(ip), None).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 0], 2).unwrap(),
            [Step::Send(vec![5, 1, 0, 1, 192, 0, 2, 7, 1, 187])]
        );
    }

    #[test]
    fn user_password_accepted() {
        for chunk in [1, 100] {
            let mut s = Socks5::new("h", 1, None, Some(("user", "pw"))).unwrap();
            assert_eq!(s.greeting(), [5, 2, 0, 2]);
            let steps = feed(&mut s, &[5, 2], chunk).unwrap();
            assert_eq!(steps, [Step::Send(b"\x01\x04user\x02pw".to_vec())]);
            let steps = feed(&mut s, &[1, 0], chunk).unwrap();
            assert_eq!(steps, [Step::Send(connect_to_name("h", 1))]);
            assert_eq!(feed(&mut s, &IPV4_REPLY, chunk).unwrap(), [Step::Done]);
        }
        // The proxy may still pick no authentication.
        let mut s = Socks5::new("h", 1, None, Some(("user", "pw"))).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 0], 2).unwrap(),
            [Step::Send(connect_to_name("h", 1))]
        );
        // Some servers answer the sub-negotiation with version 5.
        let mut s = Socks5::new("h", 1, None, Some(("u", ""))).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 2], 2).unwrap(),
            [Step::Send(b"\x01\x01u\x00".to_vec())]
        );
        assert!(feed(&mut s, &[5, 0], 2).is_ok());
    }

    #[test]
    fn debug_shows_the_user_but_not_the_password() {
        let s = Socks5::new("h", 1, None, Some(("alice", "s3cret"))).unwrap();
        let shown = format!("{s:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn user_password_rejected() {
        let mut s = Socks5::new("h", 1, None, Some(("user", "pw"))).unwrap();
        feed(&mut s, &[5, 2], 2).unwrap();
        assert_eq!(feed(&mut s, &[1, 1], 1), Err(ProxyError::Socks5AuthFailed));
        let mut s = Socks5::new("h", 1, None, Some(("user", "pw"))).unwrap();
        feed(&mut s, &[5, 2], 2).unwrap();
        assert!(matches!(
            feed(&mut s, &[2, 0], 2),
            Err(ProxyError::BadResponse(_))
        ));
    }

    #[test]
    fn no_acceptable_methods() {
        let mut s = Socks5::new("h", 1, None, None).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 0xFF], 1),
            Err(ProxyError::Socks5NoAcceptableAuth {
                offered_credentials: false
            })
        );
        let mut s = Socks5::new("h", 1, None, Some(("u", "p"))).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 0xFF], 2),
            Err(ProxyError::Socks5NoAcceptableAuth {
                offered_credentials: true
            })
        );
        // A method that was not offered (user/password without credentials, GSSAPI).
        for method in [2, 1, 0x80] {
            let mut s = Socks5::new("h", 1, None, None).unwrap();
            assert!(matches!(
                feed(&mut s, &[5, method], 2),
                Err(ProxyError::BadResponse(_))
            ));
        }
    }

    #[test]
    fn every_reply_code_is_reported_with_the_target() {
        for code in 1..=0x09u8 {
            let mut s = Socks5::new("example.com", 443, None, None).unwrap();
            feed(&mut s, &[5, 0], 2).unwrap();
            assert_eq!(
                feed(&mut s, &[5, code, 0, 1], 1),
                Err(ProxyError::Socks5Reply {
                    target: "example.com:443".into(),
                    code
                })
            );
        }
        // A name resolved here: the address asked for is named too.
        let ip = "192.0.2.7".parse().unwrap();
        let mut s = Socks5::new("example.com", 443, Some(ip), None).unwrap();
        feed(&mut s, &[5, 0], 2).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 5, 0, 1], 1),
            Err(ProxyError::Socks5Reply {
                target: "example.com:443 (192.0.2.7)".into(),
                code: 5
            })
        );
        let mut s = Socks5::new("::1", 443, None, None).unwrap();
        feed(&mut s, &[5, 0], 2).unwrap();
        assert_eq!(
            feed(&mut s, &[5, 4, 0, 1], 4),
            Err(ProxyError::Socks5Reply {
                target: "[::1]:443".into(),
                code: 4
            })
        );
    }

    #[test]
    fn bound_addresses_of_every_type() {
        let mut ipv6 = vec![5, 0, 0, 4];
        ipv6.extend_from_slice(&[0xAB; 16]);
        ipv6.extend_from_slice(&[0, 80]);
        let mut domain = vec![5, 0, 0, 3, 11];
        domain.extend_from_slice(b"proxy.local");
        domain.extend_from_slice(&[0, 80]);
        let empty_domain = vec![5, 0, 0, 3, 0, 0, 80];
        for reply in [IPV4_REPLY.to_vec(), ipv6, domain, empty_domain] {
            for chunk in [1, 3, 1000] {
                let mut s = Socks5::new("h", 1, None, None).unwrap();
                feed(&mut s, &[5, 0], 2).unwrap();
                // `feed` checks that exactly the reply is consumed, even with a trailing byte
                // offered in the same chunk.
                let mut with_extra = reply.clone();
                with_extra.push(b'!');
                let (mut used_total, mut done) = (0, false);
                while !done {
                    let n = chunk.min(with_extra.len() - used_total);
                    let (used, step) = s.receive(&with_extra[used_total..used_total + n]).unwrap();
                    used_total += used;
                    done = step == Step::Done;
                }
                assert_eq!(used_total, reply.len(), "{reply:?} by {chunk}");
                assert_eq!(s.receive(b"!").unwrap(), (0, Step::Done));
            }
        }
    }

    #[test]
    fn needed_never_exceeds_the_message() {
        let mut s = Socks5::new("h", 1, None, None).unwrap();
        feed(&mut s, &[5, 0], 2).unwrap();
        assert_eq!(s.needed(), 4);
        feed(&mut s, &[5, 0, 0, 3], 4).unwrap();
        assert_eq!(s.needed(), 1);
        feed(&mut s, &[7], 1).unwrap();
        assert_eq!(s.needed(), 9);
        s.receive(b"abc").unwrap();
        assert_eq!(s.needed(), 6);
    }

    #[test]
    fn malformed_replies_are_bad_responses() {
        let cases: [(&[u8], &[u8]); 5] = [
            (&[4, 0], b""),              // SOCKS4 version in the method reply
            (b"HT", b""),                // an HTTP proxy answering
            (&[5, 0], &[4, 0, 0, 1]),    // wrong version in the reply
            (&[5, 0], &[5, 0, 1, 1]),    // reserved byte set
            (&[5, 0], &[5, 0, 0, 0x02]), // unknown address type
        ];
        for (method, reply) in cases {
            let mut s = Socks5::new("h", 1, None, None).unwrap();
            let result = feed(&mut s, method, 1).and_then(|_| feed(&mut s, reply, 1));
            assert!(
                matches!(result, Err(ProxyError::BadResponse(_))),
                "{method:?} {reply:?}: {result:?}"
            );
        }
        let mut s = Socks5::new("h", 1, None, None).unwrap();
        let http = feed(&mut s, b"HT", 2).unwrap_err().to_string();
        assert!(http.contains("HTTP proxy"), "{http}");
    }

    #[test]
    fn lengths_over_255_are_refused_up_front() {
        let long = "a".repeat(256);
        assert!(matches!(
            Socks5::new(&long, 1, None, None),
            Err(ProxyError::Unsupported(_))
        ));
        assert!(Socks5::new(&long[..255], 1, None, None).is_ok());
        assert_eq!(
            Socks5::new("h", 1, None, Some((&long, "p"))).unwrap_err(),
            ProxyError::CredentialsTooLong
        );
        assert_eq!(
            Socks5::new("h", 1, None, Some(("u", &long))).unwrap_err(),
            ProxyError::CredentialsTooLong
        );
        assert!(Socks5::new("h", 1, None, Some((&long[..255], &long[..255]))).is_ok());
    }
}
