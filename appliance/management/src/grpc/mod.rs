//! The remote API: a role-checked proxy of the `Node` service and the
//! `Management` service, both behind a bearer token.
