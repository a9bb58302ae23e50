//! Credentials kept out of `-v`: its output ends up in terminals' scrollback, CI logs and bug
//! reports, and a base64 `Basic` token is a password in plain sight, as is the session token
//! a server sets with `Set-Cookie`.

/// Headers whose values are credentials, sent or received.
const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// A header line (`Name: value`) as `-v` may show it: a credential's value replaced by `***`,
/// keeping what helps debugging without giving anything away (the scheme of `Bearer ***`,
/// the names of `session=***; theme=***`, the attributes of `Set-Cookie: session=***; Path=/;
/// Secure`, which say where and whether a client keeps it). Other lines are kept as they are.
pub fn header_line(line: &str) -> String {
    let Some((name, value)) = line.split_once(':') else {
        return line.to_string();
    };
    let name_lower = name.trim().to_ascii_lowercase();
    if !SECRET_HEADERS.contains(&name_lower.as_str()) {
        return line.to_string();
    }
    let value = value.trim();
    let hidden = if name_lower == "set-cookie" {
        // One cookie, then its attributes (RFC 6265: a cookie's value holds no `;`).
        let (cookie, attributes) = value.split_once(';').unwrap_or((value, ""));
        let cookie = match cookie.split_once('=') {
            Some((name, _)) => format!("{}=***", name.trim()),
            None => "***".to_string(),
        };
        if attributes.is_empty() {
            cookie
        } else {
            format!("{cookie};{attributes}")
        }
    } else if name_lower == "cookie" {
        value
            .split(';')
            .map(|pair| match pair.trim().split_once('=') {
                Some((cookie, _)) => format!("{cookie}=***"),
                None => "***".to_string(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        match value.split_once(' ') {
            // `Bearer abc`, `Basic dXNlcjpwYXNz`: the scheme says which kind was sent.
            Some((scheme, _)) => format!("{scheme} ***"),
            None => "***".to_string(),
        }
    };
    format!("{name}: {hidden}")
}

#[cfg(test)]
mod tests {
    use super::header_line;

    #[test]
    fn credentials_are_hidden_and_the_rest_kept() {
        assert_eq!(
            header_line("Authorization: Bearer s3cr3t"),
            "Authorization: Bearer ***"
        );
        assert_eq!(
            header_line("proxy-authorization: Basic dXNlcjpwYXNz"),
            "proxy-authorization: Basic ***"
        );
        assert_eq!(header_line("Authorization: s3cr3t"), "Authorization: ***");
        assert_eq!(
            header_line("Cookie: session=abc; theme=dark"),
            "Cookie: session=***; theme=***"
        );
        assert_eq!(header_line("Cookie: opaque"), "Cookie: ***");
        assert_eq!(
            header_line("set-cookie: session=abc=; Path=/; HttpOnly"),
            "set-cookie: session=***; Path=/; HttpOnly"
        );
        assert_eq!(header_line("Set-Cookie: id=abc"), "Set-Cookie: id=***");
        assert_eq!(header_line("Set-Cookie: opaque"), "Set-Cookie: ***");
        assert_eq!(header_line("X-Api-Key-Hint: none"), "X-Api-Key-Hint: none");
        assert_eq!(header_line("GET /path HTTP/1.1"), "GET /path HTTP/1.1");
    }
}
