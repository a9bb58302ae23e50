//! Connecting (stub).
