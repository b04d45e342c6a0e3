//! Sets the kernel hostname of the caller's UTS namespace (the whole machine
//! when applianced is PID 1; its own namespace in hosted mode).

/// Why the hostname could not be set.
#[derive(Debug, thiserror::Error)]
pub enum HostnameError {
    /// The kernel refused `sethostname(2)`.
    #[error("cannot set the hostname to {name:?}: {source}; applianced needs CAP_SYS_ADMIN in its UTS namespace")]
    Set {
        /// The requested hostname.
        name: String,
        /// The errno.
        source: nix::Error,
    },
    /// The `netcfg-set-hostname` failpoint refused it (test builds only).
    #[cfg(feature = "failpoints")]
    #[error("cannot set the hostname to {name:?}: injected by failpoint {FAILPOINT}")]
    Injected {
        /// The requested hostname.
        name: String,
    },
}

/// Failpoint at the start of [`set_hostname`]: `return` refuses every name,
/// `return(NAME)` only `NAME`.
#[cfg(feature = "failpoints")]
pub const FAILPOINT: &str = "netcfg-set-hostname";

/// Sets the hostname of the calling thread's UTS namespace.
pub fn set_hostname(name: &str) -> Result<(), HostnameError> {
    #[cfg(feature = "failpoints")]
    if fail::eval(FAILPOINT, |only| only.is_none_or(|n| n == name)) == Some(true) {
        return Err(HostnameError::Injected {
            name: name.to_string(),
        });
    }
    nix::unistd::sethostname(name).map_err(|source| HostnameError::Set {
        name: name.to_string(),
        source,
    })?;
    tracing::info!(hostname = name, "hostname set");
    Ok(())
}

#[cfg(test)]
mod tests {
    // The root-only test (a private UTS namespace) is in tests/hostname.rs.

    #[test]
    fn refusal_names_the_hostname() {
        let long = "x".repeat(100); // over HOST_NAME_MAX: EINVAL, even for root
        let err = super::set_hostname(&long).unwrap_err().to_string();
        assert!(err.contains(&long), "{err}");
    }
}
