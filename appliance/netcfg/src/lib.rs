//! Static network configuration. (Stub: the netcfg helper owns this crate.)
