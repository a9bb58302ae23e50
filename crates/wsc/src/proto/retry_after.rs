//! `Retry-After` (RFC 9110, section 10.2.3): how long a server that refused the handshake
//! (429 Too Many Requests, 503 Service Unavailable) asks to be left alone. Exchanges ban the
//! addresses of clients that come back sooner, so the reconnecting clients wait at least
//! this long.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::HeaderMap;

/// The wait asked for by the `Retry-After` field of `headers`, as of `now`: delay-seconds
/// (`120`) or an HTTP-date in any of its three forms (a date already past is no wait).
/// `None` without the field, with more than one, or with a value that is neither.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut values = headers.get_all(RETRY_AFTER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        // Two answers to one question: believe neither.
        return None;
    }
    let value = value.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds: as long as one can wait.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(RETRY_AFTER, HeaderValue::from_static(v));
        }
        map
    }

    /// 2015-10-21 07:28:00 UTC.
    fn then() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    #[test]
    fn seconds_and_all_three_date_forms_are_read() {
        let wait = |v| retry_after(&headers(&[v]), then());
        assert_eq!(wait("120"), Some(Duration::from_secs(120)));
        assert_eq!(wait(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            wait("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        let minute = Some(Duration::from_secs(60));
        assert_eq!(wait("Wed, 21 Oct 2015 07:29:00 GMT"), minute);
        assert_eq!(wait("Wednesday, 21-Oct-15 07:29:00 GMT"), minute);
        assert_eq!(wait("Wed Oct 21 07:29:00 2015"), minute);
        // Past: no wait.
        assert_eq!(wait("Wed, 21 Oct 2015 07:27:00 GMT"), Some(Duration::ZERO));
    }

    #[test]
    fn absent_repeated_or_malformed_values_ask_for_nothing() {
        let wait = |v: &[&'static str]| retry_after(&headers(v), then());
        assert_eq!(wait(&[]), None);
        assert_eq!(wait(&["1", "2"]), None);
        for bad in [
            "-1",
            "1.5",
            "soon",
            "",
            "0x10",
            "Wed, 32 Oct 2015 07:29:00 GMT",
        ] {
            assert_eq!(wait(&[bad]), None, "{bad:?}");
        }
    }
}
