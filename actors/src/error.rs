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
    /// Journaled bytes carry a format version newer than this build reads: a newer build wrote
    /// them. Refused rather than misread; nothing was changed, so the newer build can still start.
    #[error(
        "journal: {what} format {found} was written by a newer PayMesh build; this build reads up to format {known}. Start the newer build (nothing was changed)"
    )]
    NewerFormat {
        /// Which structure: "journal record", "checkpoint", "shard snapshot".
        what: &'static str,
        /// The version found.
        found: u16,
        /// The newest version this build reads.
        known: u16,
    },
    /// An ISO 8583 message from or to an upstream host was malformed.
    #[error("ISO 8583: {0}")]
    Iso(#[from] paymesh_codecs::iso8583::IsoError),
}
