//! Renkei's domain: the records and rules that hold whatever stores or carries them. No
//! I/O, no async runtime, no database, no HTTP: the store, the real-time path and the
//! handlers all build on it, and it on nothing of theirs.
//!
//! - `audit` — the audit trail's records and their hash chain;
//! - `clock` — time as the protocol carries it, and the clock tests hold and move;
//! - `mention` — who a post names (`@name`);
//! - `password` — the rules a new password must meet;
//! - `policy` — who may do what: every authorization decision, as a pure function;
//! - `search` — text as search compares it;
//! - `two_factor` — who must have a second factor;
//! - `upload` — how long an uploaded file waits for its post.

pub mod audit;
pub mod clock;
pub mod mention;
pub mod password;
pub mod policy;
pub mod search;
pub mod two_factor;
pub mod upload;
