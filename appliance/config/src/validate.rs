//! Whole-config validation: runs every check and collects all problems, so
//! the administrator sees everything wrong in one pass.

use crate::error::Problem;
use crate::hostname::check_hostname;
use crate::schema::{NodeConfig, CONFIG_VERSION};
use crate::{interfaces, resolver, routing};

/// Every problem in `cfg`, in field order; empty when the config is valid.
pub(crate) fn problems(cfg: &NodeConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if cfg.version != CONFIG_VERSION {
        out.push(version_problem(i64::from(cfg.version)));
    }
    if let Err(why) = check_hostname(&cfg.hostname) {
        out.push(Problem::new(
            "hostname",
            &cfg.hostname,
            format!("is not a valid host name: it {why}"),
        ));
    }
    if cfg.roles.is_empty() {
        out.push(Problem::new(
            "roles",
            "[]",
            "is empty; a node needs at least one role, list \"frontend\", \"backend\" or both",
        ));
    }
    if cfg.management.port == 0 {
        out.push(Problem::new(
            "management.port",
            cfg.management.port,
            "is 0, which is not a port anyone can connect to; use 8443 or another free TCP port",
        ));
    }
    let addrs = interfaces::check(&cfg.interfaces, &mut out);
    routing::check(cfg, &addrs, &mut out);
    resolver::check_dns(&cfg.dns, &mut out);
    resolver::check_ntp(&cfg.ntp, &mut out);
    out
}

/// The refusal of an unsupported format version.
pub(crate) fn version_problem(version: i64) -> Problem {
    Problem::new(
        "version",
        version,
        format!(
            "format version {version} is not supported; this build reads version {CONFIG_VERSION} only, \
             write version = {CONFIG_VERSION} and use its schema"
        ),
    )
}
