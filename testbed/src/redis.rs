//! A Redis server of one's own: no persistence, killed and started again on its port.
//! [`OwnRedis::start_tls`] starts one that speaks only TLS, with a certificate for
//! `127.0.0.1` signed by an authority of its own, the `default` user off and an ACL user
//! allowed only what the server needs.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TestbedError;

pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// What a Redis with TLS and an ACL user runs with.
struct Tls {
    /// Holds the certificates and the key.
    dir: tempfile::TempDir,
    /// The channels its user may use (an ACL pattern such as `renkei:*`).
    channels: String,
}

/// The ACL user of a Redis started with TLS, and its password.
pub const REDIS_USER: &str = "renkei";
pub const REDIS_PASSWORD: &str = "testbed-redis-password";
/// The commands that user may run: all the server needs (docs/operations.md).
pub const REDIS_COMMANDS: &[&str] = &["-@all", "+publish", "+subscribe", "+unsubscribe", "+ping"];

impl OwnRedis {
    /// Starts `redis-server` on `port` (see `crate::free_port`) and waits until it accepts.
    pub async fn start(port: u16) -> Result<OwnRedis, TestbedError> {
        let mut redis = OwnRedis {
            port,
            child: None,
            tls: None,
        };
        redis.resume().await?;
        Ok(redis)
    }

    /// Starts one that accepts only TLS on `port`, presenting a certificate for
    /// `127.0.0.1` signed by [`Self::ca_file`]'s authority, and only the ACL user
    /// [`REDIS_USER`] with [`REDIS_COMMANDS`] on the channels matching `channels`.
    pub async fn start_tls(port: u16, channels: &str) -> Result<OwnRedis, TestbedError> {
        let dir = tempfile::tempdir().map_err(|e| TestbedError::Io("a temporary directory", e))?;
        let ca = crate::TestCa::new("Renkei testbed Redis CA")?;
        let server = ca.issue(&["127.0.0.1"])?;
        ca.write_pem(&dir.path().join("ca.pem"))?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text)
                .map_err(|e| TestbedError::Io("writing TLS files", e))
        };
        write("server.pem", &server.cert_pem)?;
        write("server.key", &server.key_pem)?;
        let mut redis = OwnRedis {
            port,
            child: None,
            tls: Some(Tls {
                dir,
                channels: channels.into(),
            }),
        };
        redis.resume().await?;
        Ok(redis)
    }

    /// Its URL: `redis://` without TLS; with it, `rediss://` and the ACL user's
    /// credentials.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!(
                "rediss://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{}",
                self.port
            ),
        }
    }

    /// With TLS, the PEM file of the authority that signed the server's certificate.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|tls| tls.dir.path().join("ca.pem"))
    }

    /// Starts it again on the same port (it keeps nothing: a restart loses every key).
    pub async fn resume(&mut self) -> Result<(), TestbedError> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => {
                let file = |name: &str| tls.dir.path().join(name).to_string_lossy().into_owned();
                command
                    .args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .args(["--tls-cert-file", &file("server.pem")])
                    .args(["--tls-key-file", &file("server.key")])
                    .args(["--tls-auth-clients", "no"])
                    .args(["--user", "default", "off"])
                    .args(["--user", REDIS_USER, "on"])
                    .arg(format!(">{REDIS_PASSWORD}"))
                    .args(["resetchannels", &format!("&{}", tls.channels)])
                    .args(REDIS_COMMANDS)
            }
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TestbedError::Missing(format!(
                    "redis-server (Debian package redis-server) must be installed: {e}"
                ))
            })?;
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TestbedError::NotReady("redis-server", self.port))
    }

    /// Kills it (SIGKILL), as when the Redis host dies.
    pub async fn kill(&mut self) -> Result<(), TestbedError> {
        let mut child = self
            .child
            .take()
            .ok_or(TestbedError::NotRunning("redis-server"))?;
        child
            .kill()
            .await
            .map_err(|e| TestbedError::Io("killing redis-server", e))
    }
}
