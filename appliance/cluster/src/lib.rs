//! Cluster membership and the rules it obeys, without I/O: the pure core
//! that applianced and the gRPC join service are built on.
//!
//! Layout, in the order a join uses them:
//! - [`identity`]: node ids and certificate fingerprints;
//! - [`beacon`]: the discovery beacon's wire format and the table of
//!   appliances heard;
//! - [`joincode`]: the one-time join code and the slot enforcing its rules;
//! - [`preflight`]: the checks run before a join changes anything;
//! - [`pake`]: the join handshake (SPAKE2 bound to both TLS certificates,
//!   key confirmation, sealed payloads);
//! - [`membership`]: the cluster configuration, the changes to it and the
//!   incremental diff a node follows; with it the management plane's
//!   accounts and settings;
//! - [`placement`]: which role sets make a valid cluster, and which services
//!   run where.
//!
//! Clocks and randomness come in as arguments, so every behaviour is
//! deterministic under test.

pub mod beacon;
pub mod identity;
pub mod joincode;
pub mod membership;
pub mod pake;
pub mod placement;
pub mod preflight;

pub use beacon::{Beacon, BeaconError, Discovered, DiscoveredEntry};
pub use identity::{CertFingerprint, NodeId};
pub use joincode::{JoinCode, JoinCodeSlot, Refusal, SlotPolicy};
pub use membership::{
    diff, Account, AdminChange, AdminData, AdminError, AdminRole, Change, ChangeError,
    ClusterConfig, ConfigDiff, DiffError, Member, MemberState, ServiceDelta, Settings,
    UploadedCert,
};
pub use pake::{
    AdminConfirming, AdminHandshake, HandshakeRefusal, JoinerConfirming, JoinerFailure,
    JoinerHandshake, PakeError, SecureChannel,
};
pub use placement::{Role, ServiceSpec};
pub use preflight::{CandidateFacts, ClusterFacts, PreflightFailure, PreflightReport};
/// The RNG traits (and `OsRng`) of the version this crate's cryptography uses.
pub use rand_core;
