//! Errors of the padtrim library. Every message says what is wrong with the input and where;
//! the CLI adds the file name. A caller tells errors apart by [`Error::kind`], never by text.

use thiserror::Error;

/// Anything that makes an input unusable, a rewrite unsafe, or its output wrong.
#[derive(Debug, Error)]
pub enum Error {
    /// The bytes are not an ELF file we can read (truncated, corrupt, not RISC-V, ...).
    #[error("{0}")]
    Malformed(String),
    /// The ELF file is well formed but is not something padtrim handles.
    #[error("{0}")]
    Unsupported(String),
    /// The rewriter refuses: rewriting this input could not be proven safe.
    #[error("refusing to rewrite: {0}")]
    Refused(String),
    /// The plan found no room for the `__mcount_loc` table (the rewrite can go on without it).
    #[error("refusing to rewrite: {0}")]
    NoRoomForTable(String),
    /// The rewritten image failed translation validation: a defect of padtrim, not of the
    /// input. Nothing should be written.
    #[error("the rewrite failed its own verification: {mismatches} mismatches; first: {first}")]
    VerificationFailed {
        /// How many mismatches the verifier found.
        mismatches: usize,
        /// The first of them, as the verifier reports it.
        first: String,
    },
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What kind of failure an [`enum@Error`] is: what a caller matches on (the command line maps it
/// to its exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input cannot be used: malformed, or valid but not something padtrim handles.
    UnusableInput,
    /// The input is usable, but rewriting it could not be proven safe.
    Refused,
    /// padtrim produced a wrong output and caught it: a bug to report, not the input's fault.
    VerificationFailed,
    /// An I/O error.
    Io,
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
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Malformed(_) | Error::Unsupported(_) => ErrorKind::UnusableInput,
            Error::Refused(_) | Error::NoRoomForTable(_) => ErrorKind::Refused,
            Error::VerificationFailed { .. } => ErrorKind::VerificationFailed,
            Error::Io(_) => ErrorKind::Io,
        }
    }
}

impl From<object::read::Error> for Error {
    fn from(e: object::read::Error) -> Self {
        Error::Malformed(e.to_string())
    }
}

/// Result with the library's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
