//! Tunnels (stub).
