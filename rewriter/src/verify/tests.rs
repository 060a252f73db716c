//! Unit tests of the verifier on small synthetic cases.
