//! Static network configuration for applianced.
//!
//! - [`model`]: the plain data: desired [`NetworkSpec`], [`Observed`] kernel
//!   state, the [`Owned`] record, [`Action`]s and the [`Plan`].
//! - [`mod@plan`]: the pure planner.
//! - [`mod@restore`]: the pure rollback planner.
//! - [`observe`]: reads links, addresses and routes over rtnetlink.
//! - [`apply`]: runs one [`Action`] (over rtnetlink, or a `/proc/sys` write).
//! - [`netcfg`]: the [`Netcfg`] front: observe, plan, run, roll back.
//! - [`hostname`]: sets the hostname (UTS namespace of the caller).
//! - [`resolv`]: renders and atomically writes resolv.conf.

pub mod apply;
pub mod hostname;
pub mod model;
pub mod netcfg;
pub mod observe;
pub mod plan;
pub mod resolv;
pub mod restore;

pub use hostname::{set_hostname, HostnameError};
pub use model::{
    Action, InterfaceSpec, NetworkSpec, Observed, ObservedAddress, ObservedLink, ObservedRoute,
    Owned, OwnedAddress, Plan, RouteAction, RouteKey, RTPROT_STATIC,
};
pub use netcfg::{ApplyReport, NetError, Netcfg};
pub use plan::{plan, PlanError};
pub use resolv::{render_resolv_conf, write_atomically, write_resolv_conf, ResolvError};
pub use restore::restore;
