//! `/metrics`: node, service, firewall-counter, membership and join figures
//! in the Prometheus text format.

/// Placeholder: see the server helper.
#[derive(Default)]
pub struct Metrics {}
