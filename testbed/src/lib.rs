//! Services of one's own for the server's tests, load runs and the soak, each on a free
//! loopback port, that the server talks to as it would to the real ones.
//!
//! A PostgreSQL cluster (`initdb` into a temporary directory) and a Redis server that can be
//! crashed and started again without disturbing anything else on the machine; and an
//! S3-compatible object store for the file store's tests. Needs Debian's `postgresql` and
//! `redis-server` packages, and moto (`pip install 'moto[server]'`). Both can also be
//! started with TLS on loopback ([`OwnPostgres::start_tls`], [`OwnRedis::start_tls`], the
//! latter with an ACL user), their certificates signed by a [`TestCa`] of their own.
//!
//! A Web Push service ([`OwnPush`]): HTTPS with a self-signed certificate the server is
//! told to trust; it makes subscriptions as a browser would, keeps their private keys, and
//! records every request with its VAPID claims verified (RFC 8292) and its payload
//! decrypted (RFC 8291), refusing what a real push service would refuse; each subscription
//! can be told to accept, be gone, throttle, fail or never answer. Needs nothing installed.
//!
//! An SMTP server ([`OwnSmtp`]): aiosmtpd (Debian's `python3-aiosmtpd`, run by Debian's
//! `/usr/bin/python3` or `RENKEI_TEST_PYTHON`) that keeps every message with its subject and
//! text decoded, and can refuse chosen recipients; and [`SilentSmtp`], which accepts
//! connections and never says a word.
//!
//! Hostile input: [`gif_bomb`], a decompression bomb of 35 bytes.

mod bomb;
mod postgres;
mod push;
mod redis;
mod s3;
mod smtp;
mod tls;

pub use bomb::gif_bomb;
pub use postgres::OwnPostgres;
pub use push::{Behaviour, OwnPush, PushSubscription, Received, VapidClaims};
pub use redis::{OwnRedis, REDIS_COMMANDS, REDIS_PASSWORD, REDIS_USER};
pub use s3::OwnS3;
pub use smtp::{Mail, OwnSmtp, SilentSmtp};
pub use tls::{ServerCert, TestCa};

/// Why a service could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("{0}")]
    Missing(String),
    #[error("{0} did not come up on port {1}")]
    NotReady(&'static str, u16),
    #[error("{0} is not running")]
    NotRunning(&'static str),
    #[error("TLS: {0}")]
    Tls(String),
    /// An argument the service cannot use: an unknown subscription, a malformed key.
    #[error("{0}")]
    Invalid(String),
}

/// A free loopback port (free when asked: a service binds it right after).
pub fn free_port() -> Result<u16, TestbedError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| TestbedError::Io("a free port", e))
}
