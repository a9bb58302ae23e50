//! What `Debug` output leaves out: a request, response, builder or handshake printed into a
//! log (or by a `main` that returns `Result`) must not carry the credentials it holds.

use std::fmt;

use http::HeaderMap;

/// What stands in for a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// What stands in for a whole request head (it holds the credentials sent).
pub(crate) const HEAD_NOT_SHOWN: &str = "<not shown: may hold credentials>";

/// Headers whose values are credentials, sent or received: a password or token, or the
/// session a server sets with `Set-Cookie`.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

fn is_secret(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s))
}

/// The headers as `Debug` shows them: names as given, secret values redacted.
pub(crate) fn shown_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if is_secret(name) { REDACTED } else { value };
            (name.as_str(), value)
        })
        .collect()
}

/// A header map that `Debug` prints as `HeaderMap` does, secret values redacted.
pub(crate) struct ShownHeaderMap<'a>(pub(crate) &'a HeaderMap);

impl fmt::Debug for ShownHeaderMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown: &dyn fmt::Debug = if is_secret(name.as_str()) {
                    &REDACTED
                } else {
                    value
                };
                (name, shown)
            }))
            .finish()
    }
}
