//! Config protection.
