//! A Redis server of one's own: no persistence, killed and started again on its port.

use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TestbedError;

pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts `redis-server` on `port` (see `crate::free_port`) and waits until it accepts.
    pub async fn start(port: u16) -> Result<OwnRedis, TestbedError> {
        let mut redis = OwnRedis { port, child: None };
        redis.resume().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port (it keeps nothing: a restart loses every key).
    pub async fn resume(&mut self) -> Result<(), TestbedError> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
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
