//! `Debug` for [`ClientBuilder`] by hand: a builder printed into a log must not carry the
//! credentials it holds (a URL's password, `Authorization` and `Cookie` header values).

use std::fmt;

use super::ClientBuilder;
use crate::proto::redact::{shown_headers, REDACTED};

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers = shown_headers(&self.headers);
        let mut d = f.debug_struct("ClientBuilder");
        d.field("url", &url_without_password(&self.url))
            .field("headers", &headers)
            .field("protocols", &self.protocols)
            .field("origin", &self.origin)
            .field("config", &self.config)
            .field("max_handshake_size", &self.max_handshake_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("open_timeout", &self.open_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("close_timeout", &self.close_timeout);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate);
        d.field("proxy", &self.proxy)
            .field("resolve", &self.resolve)
            .field("keepalive", &self.keepalive)
            .field("max_redirects", &self.max_redirects)
            .field("insecure_redirects", &self.insecure_redirects)
            .finish()
    }
}

/// `url` with the password of its `user:password@` (if any) redacted; the rest as given,
/// parsed or not.
fn url_without_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_owned();
    };
    let password = start + colon + 1..start + at;
    format!(
        "{}{REDACTED}{}",
        &url[..password.start],
        &url[password.end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_only_their_password() {
        for (url, shown) in [
            (
                "wss://u:pw@h:1/p?q=a:b@c",
                "wss://u:<redacted>@h:1/p?q=a:b@c",
            ),
            ("ws://u@h/", "ws://u@h/"),
            ("ws://h/a:b@c", "ws://h/a:b@c"),
            ("u:p@w@h", "u:<redacted>@h"),
            ("", ""),
        ] {
            assert_eq!(url_without_password(url), shown);
        }
    }

    #[test]
    fn a_builder_printed_shows_no_credentials() {
        let builder = ClientBuilder::new("wss://alice:s3cret@example.com/feed")
            .header("Authorization", "Bearer t0ken")
            .header("cookie", "session=c00kie")
            .header("X-Client", "tests");
        let shown = format!("{builder:?}");
        for secret in ["s3cret", "t0ken", "c00kie"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in ["alice", "example.com/feed", "X-Client", "tests"] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
    }
}
