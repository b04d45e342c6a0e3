//! Joining an appliance to a cluster, both sides of it.
//!
//! - `driver`: the admin side, run by a member for an administrator
//!   ([`PeerNode::join_candidate`](crate::PeerNode::join_candidate)): it
//!   drives the join and reports it as a stream of [`JoinProgress`]
//!   (`progress`); `checks` holds what it checks in what the appliance
//!   sends (its facts, its certificate request).
//! - `candidate`: the appliance being joined, its `Join` service; it
//!   answers, proves the join code, and stores the membership it is given.
//! - `error`: why a join stops, one error type per side.
//!
//! The two sides meet in `Handshake`, a stream of frames: the PAKE's
//! messages in the clear, then sealed payloads (certificate request up,
//! bundle down, acknowledgement up).

mod candidate;
mod checks;
mod driver;
mod error;
mod progress;

pub(crate) use candidate::JoinService;
pub use candidate::{JoinSlot, SharedSlot};
pub use progress::JoinProgress;
