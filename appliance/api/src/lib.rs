//! The gRPC API of applianced: the generated messages, client and server
//! (`v1`), and how clients reach a node over its Unix socket ([`connect_unix`]).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Generated code for `appliance.v1`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("appliance.v1");
}

/// Where applianced listens when run as PID 1.
pub const DEFAULT_SOCKET: &str = "/run/appliance/applianced.sock";

/// Why a client could not reach applianced.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket does not exist or refused the connection.
    #[error("cannot reach applianced at {path} (is applianced running? pass --socket or set APPLIANCE_SOCKET)")]
    Unreachable {
        /// The socket path tried.
        path: PathBuf,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Opens a channel to applianced over its Unix socket.
pub async fn connect_unix(path: &Path) -> Result<Channel, ConnectError> {
    let socket = path.to_path_buf();
    // The URI is required by tonic but unused: the connector ignores it.
    let endpoint = Endpoint::from_static("http://applianced.local");
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| ConnectError::Unreachable {
            path: path.to_path_buf(),
            source,
        })
}
