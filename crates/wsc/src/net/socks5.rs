//! SOCKS5 (stub).
