//! What `Debug` output leaves out: a request, builder or handshake printed into a log must
//! not carry the credentials it holds (`Authorization`, `Proxy-Authorization` and `Cookie`
//! header values).

/// What stands in for a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// What stands in for a whole request head (it holds the credentials sent).
pub(crate) const HEAD_NOT_SHOWN: &str = "<not shown: may hold credentials>";

/// Request headers whose values are credentials.
const SECRET_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// The headers as `Debug` shows them: names as given, secret values redacted.
pub(crate) fn shown_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| {
            let secret = SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s));
            (
                name.as_str(),
                if secret { REDACTED } else { value.as_str() },
            )
        })
        .collect()
}
