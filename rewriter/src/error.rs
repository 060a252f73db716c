//! Errors of the padtrim library. Every message says what is wrong with the input and where;
//! the CLI adds the file name.

use thiserror::Error;

/// Anything that makes an input unusable or a rewrite unsafe.
#[derive(Debug, Error)]
pub enum Error {
    /// The bytes are not an ELF file we can read (truncated, corrupt, not RISC-V, ...).
    #[error("{0}")]
    Malformed(String),
    /// The ELF file is well formed but is not something padtrim handles.
    #[error("{0}")]
    Unsupported(String),
    /// A patch site that cannot be valid (outside executable code, mid-instruction, ...).
    #[error("patch site at {address:#x}: {reason}")]
    BadSite {
        /// Address the table entry holds.
        address: u64,
        /// Why it is invalid.
        reason: String,
    },
    /// The rewriter refuses: rewriting this input could not be proven safe.
    #[error("refusing to rewrite: {0}")]
    Refused(String),
    /// The rewritten image failed translation validation.
    #[error("verification failed: {0}")]
    Verify(String),
}

impl Error {
    /// Shorthand for [`Error::Malformed`].
    pub fn malformed(msg: impl Into<String>) -> Self {
        Error::Malformed(msg.into())
    }
    /// Shorthand for [`Error::Refused`].
    pub fn refused(msg: impl Into<String>) -> Self {
        Error::Refused(msg.into())
    }
}

impl From<object::read::Error> for Error {
    fn from(e: object::read::Error) -> Self {
        Error::Malformed(e.to_string())
    }
}

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
