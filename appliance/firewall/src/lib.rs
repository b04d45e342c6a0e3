//! The node firewall: a default-deny nftables ruleset in one table,
//! `inet appliance`, that applianced owns (it never touches other tables).
//!
//! Layout (plan, then apply):
//! - [`spec`]: the desired state and its named-set view (pure).
//! - [`rules`]: the chains and rules as data, each rule with a stable id (pure).
//! - [`render_text`](mod@render_text), [`render_json`](mod@render_json): `nft -f`
//!   text and nft JSON (pure).
//! - [`diff`](mod@diff): set-element changes between two specs, or "needs full" (pure).
//! - [`status`]: parsing `nft -j list table inet appliance` (pure).
//! - [`apply`]: [`Firewall`], which runs the batches through an [`NftRunner`].
//! - [`runner`]: how `nft` is started.

pub mod apply;
pub mod diff;
pub mod error;
pub mod render_json;
pub mod render_text;
pub mod rules;
pub mod runner;
pub mod spec;
pub mod status;

pub use apply::{ApplyKind, ApplyReport, Firewall, FullReason};
pub use diff::{diff, Diff, SetDelta};
pub use error::FirewallError;
pub use render_json::{render_add_peer_json, render_delta_json, render_json, render_nftables};
pub use render_text::render_text;
pub use runner::{CommandNft, NftOutput, NftRunner, SystemNft};
pub use spec::{FirewallSpec, ManagementNetworks, PortSpec, Proto, SetElem, SetName};
pub use status::{FirewallStatus, RuleStatus};

/// The nft family of our table.
pub const FAMILY: &str = "inet";
/// The name of our table; applianced owns it and nothing else.
pub const TABLE: &str = "appliance";
