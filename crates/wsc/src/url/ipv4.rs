//! Hosts that are IPv4 addresses in the spellings URLs allow besides dotted decimal (the
//! WHATWG URL standard's IPv4 parser): `127.1`, `0x7f000001`, `0177.0.0.1`, `2130706433`.
//! The resolver reads them as addresses too (`inet_aton`), so they are made canonical
//! where the URL is parsed: otherwise the same address would be a name to everything that
//! looks at the host (loopback and `no_proxy` checks, TLS server names, the Host header).

use std::net::Ipv4Addr;

/// What a host is, as far as IPv4 goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ipv4Host {
    /// Not an IPv4 address: its last label is not a number (`example.com`).
    Name,
    /// An IPv4 address, in whatever spelling.
    Address(Ipv4Addr),
    /// Ends in a number, so it can only be an address, and is not a valid one
    /// (`256.0.0.1`, `1.2.3.4.5`, `example.123`).
    Invalid,
}

/// Classifies a (lowercased) host, without allocating (it runs for every connection).
pub(crate) fn classify(host: &str) -> Ipv4Host {
    // One trailing dot is allowed: `1.2.3.4.` is `1.2.3.4`.
    let host = match host.strip_suffix('.') {
        Some(rest) if !rest.is_empty() => rest,
        _ => host,
    };
    let last = host.rsplit('.').next().unwrap_or("");
    let ends_in_number =
        !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || number(last).is_some());
    if !ends_in_number {
        return Ipv4Host::Name;
    }
    address(host).map_or(Ipv4Host::Invalid, Ipv4Host::Address)
}

/// The address of 1 to 4 numeric parts; the last fills the bytes the others leave.
fn address(host: &str) -> Option<Ipv4Addr> {
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for part in host.split('.') {
        *numbers.get_mut(count)? = number(part)?;
        count += 1;
    }
    let (last, leading) = numbers[..count].split_last()?;
    if leading.iter().any(|&n| n > 255) || *last >= 1u64 << (8 * (5 - count)) {
        return None;
    }
    let mut value = *last;
    for (i, n) in leading.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

/// One part: decimal, hex after `0x`, octal after a leading `0`; `None` if not a number
/// (or past any address).
fn number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Past u64 is past any address: as invalid as a part over 255.
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str) -> Ipv4Host {
        classify(host)
    }

    #[test]
    fn every_spelling_of_an_address_is_the_address() {
        let loopback = Ipv4Host::Address(Ipv4Addr::LOCALHOST);
        for host in [
            "127.0.0.1",
            "127.0.0.1.",
            "127.1",
            "127.0.1",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "0x7f.0.0.0x1",
            "2130706433",
        ] {
            assert_eq!(addr(host), loopback, "{host}");
        }
        assert_eq!(addr("0x"), Ipv4Host::Address(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            addr("10.0x10203"),
            Ipv4Host::Address(Ipv4Addr::new(10, 1, 2, 3))
        );
        assert_eq!(addr("4294967295"), Ipv4Host::Address(Ipv4Addr::BROADCAST));
    }

    #[test]
    fn names_stay_names() {
        for host in [
            "example.com",
            "localhost",
            "1.2.3.example",
            "0x7g",
            "a1",
            "xn--1",
        ] {
            assert_eq!(addr(host), Ipv4Host::Name, "{host}");
        }
    }

    #[test]
    fn a_host_ending_in_a_number_that_is_no_address_is_invalid() {
        for host in [
            "256.0.0.1",
            "1.2.3.4.5",
            "example.123",
            "4294967296",
            "1.2.3.256",
            "1.16777216",
            "08.0.0.1",
            "1..2",
            "99999999999999999999999",
        ] {
            assert_eq!(addr(host), Ipv4Host::Invalid, "{host}");
        }
    }
}
