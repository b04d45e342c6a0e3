//! gRPC API (stub).
