//! Why a join stops, on each side: [`DriverError`] (with [`CsrMismatch`]) on
//! the admin side, [`CandidateError`] (with [`BundleError`]) on the
//! appliance being joined. The admin side's messages say what changed in
//! the cluster; the candidate's end up in its log and, sealed, in its
//! refusal to the admin side.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use appliance_cluster::pake::PakeError;
use appliance_cluster::{CertFingerprint, ChangeError, NodeId, Refusal};
use appliance_pki::PkiError;
use uuid::Uuid;

use crate::authority::AuthorityError;
use crate::error::{HookError, PeerError};
use crate::state::WireError;

/// Why a join stopped (the admin side). Each message says what changed in
/// the cluster: nothing, unless it says so.
#[derive(Debug, thiserror::Error)]
pub(super) enum DriverError {
    /// This node's own part failed (not a member, no authority, a push).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The appliance is unreachable or does not fit the cluster.
    #[error("preflight failed: {failures}; nothing was changed")]
    Preflight {
        /// Every failure, joined with "; ".
        failures: String,
    },
    /// Its facts do not read.
    #[error("the appliance at {address} sent an unreadable {what}: {detail}; nothing was changed")]
    Unreadable {
        /// Its join port.
        address: SocketAddr,
        /// The fact.
        what: &'static str,
        /// The value and what is wrong with it.
        detail: String,
    },
    /// The handshake stream is closed.
    #[error("the appliance hung up")]
    HungUp,
    /// No message within the step limit.
    #[error("the appliance sent no {what} within {limit:?}")]
    Silent {
        /// The message waited for.
        what: &'static str,
        /// The step limit.
        limit: Duration,
    },
    /// The appliance ended the stream with an error status.
    #[error("the appliance refused before its {what}: {message}")]
    RefusedBefore {
        /// The message waited for.
        what: &'static str,
        /// The status message.
        message: String,
    },
    /// The stream ended.
    #[error("the appliance hung up before its {what}")]
    HungUpBefore {
        /// The message waited for.
        what: &'static str,
    },
    /// A frame without a body.
    #[error("the appliance sent an empty frame instead of its {what}")]
    EmptyFrame {
        /// The message waited for.
        what: &'static str,
    },
    /// A sealed payload where a handshake message belongs.
    #[error("the appliance sent a sealed payload instead of its {what}")]
    SealedInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// A handshake message where a sealed payload belongs.
    #[error("the appliance sent a handshake message instead of its {what}")]
    PakeInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// The secure channel refused to seal or open a payload.
    #[error(transparent)]
    Channel(PakeError),
    /// The PAKE failed (wrong code, another certificate, a malformed message).
    #[error("{0}; nothing was changed")]
    Pake(PakeError),
    /// A sealed payload that is not the message expected.
    #[error("the appliance's {what} does not decode: {source}")]
    Undecodable {
        /// The message.
        what: &'static str,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// The certificate request does not match what the join checked.
    #[error("{0}; nothing was changed")]
    Csr(#[from] CsrMismatch),
    /// The authority refused to add the node or sign its certificate.
    #[error("{0}; nothing was changed")]
    Admit(AuthorityError),
    /// The appliance refused the bundle.
    #[error("the appliance refused its membership: {detail}")]
    MembershipRefused {
        /// Its reason.
        detail: String,
    },
    /// The appliance did not acknowledge, and was taken out again.
    #[error("{reason}; the node was taken out of the cluster again (generation {generation})")]
    TakenOut {
        /// Why it did not acknowledge.
        reason: Box<DriverError>,
        /// The generation without it.
        generation: u64,
    },
    /// The appliance did not acknowledge, and taking it out failed.
    #[error(
        "{reason}; taking the node out again failed too: {error}; remove it with \
         `appliancectl cluster remove`"
    )]
    TakeOutFailed {
        /// Why it did not acknowledge.
        reason: Box<DriverError>,
        /// Why the removal failed.
        error: PeerError,
    },
}

impl From<PakeError> for DriverError {
    fn from(e: PakeError) -> Self {
        DriverError::Channel(e)
    }
}

/// Why the appliance's certificate request is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum CsrMismatch {
    /// Its signature or encoding does not verify.
    #[error("the appliance's {0}")]
    Unverified(PkiError),
    /// Its key is not the join certificate's.
    #[error(
        "the appliance's certificate request is for another key than its join certificate \
         {join_cert} (the one the handshake confirmed)"
    )]
    OtherKey {
        /// The join certificate's fingerprint.
        join_cert: CertFingerprint,
    },
    /// The join certificate does not read.
    #[error("the appliance's join certificate: {0}")]
    JoinCert(PkiError),
    /// Another node id than its facts.
    #[error("the appliance's certificate request names node {asked}, its facts node {facts}")]
    Node {
        /// In the request.
        asked: Uuid,
        /// In the facts.
        facts: NodeId,
    },
    /// Another hostname than its facts.
    #[error("the appliance's certificate request names host {asked:?}, its facts {facts:?}")]
    Host {
        /// In the request.
        asked: String,
        /// In the facts.
        facts: String,
    },
    /// Other addresses than its facts.
    #[error(
        "the appliance's certificate request names the addresses {asked:?}, its facts {facts:?}"
    )]
    Addresses {
        /// In the request.
        asked: BTreeSet<IpAddr>,
        /// In the facts.
        facts: BTreeSet<IpAddr>,
    },
}

/// Why a join of this appliance stopped (the side being joined).
#[derive(Debug, thiserror::Error)]
pub(super) enum CandidateError {
    /// The handshake stream is closed.
    #[error("the admin side hung up")]
    HungUp,
    /// No message within the step limit.
    #[error("no {what} within {limit:?}")]
    Silent {
        /// The message waited for.
        what: &'static str,
        /// The step limit.
        limit: Duration,
    },
    /// The stream ended with an error status.
    #[error("the stream failed before the {what}: {message}")]
    StreamFailed {
        /// The message waited for.
        what: &'static str,
        /// The status message.
        message: String,
    },
    /// The stream ended.
    #[error("the admin side hung up before the {what}")]
    HungUpBefore {
        /// The message waited for.
        what: &'static str,
    },
    /// A frame without a body.
    #[error("an empty frame instead of the {what}")]
    EmptyFrame {
        /// The message waited for.
        what: &'static str,
    },
    /// A sealed payload where a handshake message belongs.
    #[error("a sealed payload instead of the {what}")]
    SealedInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// A handshake message where a sealed payload belongs.
    #[error("a handshake message instead of the {what}")]
    PakeInstead {
        /// The message waited for.
        what: &'static str,
    },
    /// The PAKE refused the admin side, or the secure channel a payload.
    #[error(transparent)]
    Pake(#[from] PakeError),
    /// The admin side went away between the PAKE steps.
    #[error("{cause} ({refusal})")]
    Abandoned {
        /// How it went away.
        cause: Box<CandidateError>,
        /// What the join code slot counted.
        refusal: Refusal,
    },
    /// This node's own part (its request, becoming a member).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The bundle is not protobuf.
    #[error("the join bundle does not decode: {0}")]
    UndecodableBundle(prost::DecodeError),
    /// The bundle does not check out.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The daemon could not store the membership.
    #[error("this appliance could not store its membership: {0}")]
    NotStored(HookError),
    /// A failure after the PAKE: the code is spent and was replaced.
    #[error("{0}; the join code was replaced")]
    CodeReplaced(Box<CandidateError>),
}

/// Why the bundle received is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum BundleError {
    /// A certificate does not read.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The certificate is for another node.
    #[error("the certificate received names node {named}, not this node {me}")]
    OtherNode {
        /// The node it names.
        named: Uuid,
        /// This node.
        me: NodeId,
    },
    /// The certificate is for another key.
    #[error("the certificate received is not for this node's key")]
    OtherKey,
    /// The CA did not sign the certificate.
    #[error("the certificate received is not signed by the CA received ({ca})")]
    NotSigned {
        /// The CA's fingerprint.
        ca: String,
    },
    /// No state in the bundle.
    #[error("the join bundle has no cluster configuration")]
    NoConfiguration,
    /// The state does not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The state is another cluster's than the handshake's.
    #[error("the configuration received is for cluster {config}, the handshake for {handshake}")]
    OtherCluster {
        /// The configuration's cluster.
        config: Uuid,
        /// The handshake's cluster.
        handshake: Uuid,
    },
    /// The configuration breaks the membership rules.
    #[error("the configuration received is not valid: {0}")]
    Invalid(ChangeError),
    /// The configuration does not list this node.
    #[error("the configuration received does not list this node")]
    NotListed,
    /// The configuration lists another certificate for this node.
    #[error("the configuration received lists another certificate for this node")]
    OtherCertificate,
}
