//! Test-only fault injection (built only with the `failpoints` feature, which
//! `make test` turns on and `make image` never does): configures fail-rs
//! failpoints from the `FAILPOINTS` environment variable at start, in
//! fail-rs syntax, `name=actions;name=actions` (for example
//! `netcfg-set-hostname=return(web-2)` or `applianced-ready=panic`).
//!
//! The points:
//! - `netcfg-set-hostname`: setting the hostname fails (`return(NAME)`: only
//!   for `NAME`);
//! - `netcfg-write-resolv-conf`: writing resolv.conf fails (`return(TEXT)`:
//!   only contents containing `TEXT`);
//! - `applianced-transition-commit`: the state store commit of a transition
//!   fails (`return(TEXT)`: only a transition whose config, as TOML,
//!   contains `TEXT`);
//! - `applianced-ready`: right after the ready line is announced (`panic`
//!   there tests that a panic of PID 1 reboots the machine).

/// Failpoint before the state store commit of a transition.
pub const TRANSITION_COMMIT: &str = "applianced-transition-commit";

/// Failpoint right after the ready line.
pub const READY: &str = "applianced-ready";

/// Configures the failpoints named in `FAILPOINTS`, if set. An entry fail-rs
/// cannot parse is refused, named, and the others still apply.
pub fn setup() -> Result<(), String> {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return Ok(());
    };
    let mut refused = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let result = match entry.split_once('=') {
            Some((name, actions)) => fail::cfg(name.trim(), actions.trim()),
            None => Err("expected name=actions".to_owned()),
        };
        match result {
            Ok(()) => eprintln!("applianced: failpoint {entry}"),
            Err(e) => refused.push(format!("{entry:?}: {e}")),
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!("FAILPOINTS refused: {}", refused.join("; ")))
    }
}

/// Whether the commit of a transition to the config `config_toml` is to fail.
pub fn commit_fails(config_toml: &str) -> bool {
    fail::eval(TRANSITION_COMMIT, |only| {
        only.is_none_or(|t| config_toml.contains(&t))
    }) == Some(true)
}
