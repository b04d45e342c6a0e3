//! QA harness (stub).
