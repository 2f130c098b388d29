//! Services of one's own for fault tests, load runs and the soak: a PostgreSQL cluster
//! (`initdb` into a temporary directory) and a Redis server, each on a free loopback port,
//! that can be crashed and started again without disturbing anything else on the machine;
//! and an S3-compatible object store for the file store's tests. Needs Debian's
//! `postgresql` and `redis-server` packages, and moto (`pip install 'moto[server]'`).

mod postgres;
mod redis;
mod s3;

pub use postgres::OwnPostgres;
pub use redis::OwnRedis;
pub use s3::OwnS3;

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
}

/// A free loopback port (free when asked: a service binds it right after).
pub fn free_port() -> Result<u16, TestbedError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| TestbedError::Io("a free port", e))
}
