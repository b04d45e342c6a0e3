//! Durable node state (stub).
