//! The crate's one error enum.

/// Errors of the actor mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The configuration is inconsistent (unknown host in a route, bad merchant id, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// An upstream link failed at the socket level.
    #[error("upstream link {host}: {source}")]
    Link {
        /// Host name.
        host: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A journal record could not be written or read back.
    #[error("journal: {0}")]
    Journal(String),
    /// An ISO 8583 message from or to an upstream host was malformed.
    #[error("ISO 8583: {0}")]
    Iso(#[from] paymesh_codecs::iso8583::IsoError),
}
