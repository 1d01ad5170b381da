//! Integration tests of the storage crate: the conformance suite, stamped once
//! per engine.

mod conformance;
