//! The one error type of the crate; every variant names the input at fault.

/// What went wrong, with the certificate, request or value involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen could not generate, sign or parse something.
    #[error("could not {action}: {source}")]
    Rcgen {
        /// What was being done ("sign the certificate of node ...").
        action: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
    /// A text that should hold a PEM block does not.
    #[error("{what} is not usable PEM: {reason}")]
    Pem {
        /// What the text was meant to be ("the CA certificate").
        what: String,
        /// Why it is refused.
        reason: String,
    },
    /// Bytes that should be an X.509 certificate are not one we accept.
    #[error("{what} is not an acceptable certificate: {reason}")]
    Certificate {
        /// Which certificate ("the CA certificate", "node certificate (SHA-256 …)").
        what: String,
        /// Why it is refused.
        reason: String,
    },
    /// A private key does not belong to the certificate it is paired with.
    #[error("the private key does not belong to {what} (SHA-256 {fingerprint})")]
    KeyMismatch {
        /// Which certificate.
        what: String,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// A certificate is past its end of validity.
    #[error("{what} expired on {when}")]
    Expired {
        /// Which certificate.
        what: String,
        /// Its end of validity.
        when: String,
    },
    /// A certificate is not valid yet.
    #[error("{what} is not valid before {when}")]
    NotYetValid {
        /// Which certificate.
        what: String,
        /// Its start of validity.
        when: String,
    },
    /// A server certificate does not name every host it must serve.
    #[error("{what} does not cover {}; it names {}", missing.join(", "), if names.is_empty() { "nothing".to_string() } else { names.join(", ") })]
    NotCovered {
        /// Which certificate.
        what: String,
        /// The hostnames and addresses it lacks.
        missing: Vec<String>,
        /// The names it has.
        names: Vec<String>,
    },
    /// A certificate signing request is refused.
    #[error("certificate signing request refused: {reason}")]
    CsrRefused {
        /// Why, naming the value at fault.
        reason: String,
    },
    /// A renewal is refused.
    #[error("renewal of certificate {fingerprint} refused: {reason}")]
    RenewalRefused {
        /// The fingerprint of the certificate to renew.
        fingerprint: String,
        /// Why.
        reason: String,
    },
    /// A node subject that cannot go into a certificate.
    #[error("{value:?} cannot be a certificate's {what}: {reason}")]
    InvalidName {
        /// The field ("hostname").
        what: &'static str,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A time outside what a certificate can hold.
    #[error("{what} is out of the range a certificate can hold")]
    TimeOutOfRange {
        /// Which time ("the end of validity from now + 365 days").
        what: String,
    },
    /// A revocation list entry that is not a serial or fingerprint in hex.
    #[error("revocation list entry {entry:?} is not {expected}")]
    RevocationEntry {
        /// The entry as given.
        entry: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The operating system's random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// rustls refused to build a configuration.
    #[error("could not build the TLS configuration of {what}: {source}")]
    Tls {
        /// Which configuration.
        what: &'static str,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}
