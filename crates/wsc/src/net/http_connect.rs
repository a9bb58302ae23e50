//! HTTP CONNECT (stub).
