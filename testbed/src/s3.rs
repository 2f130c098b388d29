//! An S3-compatible object store of one's own: moto's server (Python, `pip install
//! 'moto[server]'`) on a free loopback port, holding everything in memory.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

use crate::TestbedError;

pub struct OwnS3 {
    pub port: u16,
    _child: Child,
}

impl OwnS3 {
    /// Starts `moto_server` on `port` (see `crate::free_port`) and waits until it answers.
    pub async fn start(port: u16) -> Result<OwnS3, TestbedError> {
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TestbedError::Missing(format!(
                    "moto_server (pip install 'moto[server]') must be installed: {e}"
                ))
            })?;
        let s3 = OwnS3 {
            port,
            _child: child,
        };
        for _ in 0..300 {
            if s3.request("GET", "/").await.is_ok() {
                return Ok(s3);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(TestbedError::NotReady("moto_server", port))
    }

    /// The endpoint URL for S3 clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, name: &str) -> Result<(), TestbedError> {
        let (status, _) = self.request("PUT", &format!("/{name}")).await?;
        if status == 200 {
            Ok(())
        } else {
            Err(TestbedError::Missing(format!(
                "creating bucket {name}: HTTP {status}"
            )))
        }
    }

    /// Whether an object exists: the bucket's listing (which moto gives unsigned) names it.
    pub async fn exists(&self, bucket: &str, key: &str) -> Result<bool, TestbedError> {
        let (_, listing) = self
            .request("GET", &format!("/{bucket}?prefix={key}"))
            .await?;
        Ok(listing.contains(&format!("<Key>{key}</Key>")))
    }

    /// One HTTP/1.0 request with no body; its status code and body.
    async fn request(&self, method: &str, path: &str) -> Result<(u16, String), TestbedError> {
        let io = |e| TestbedError::Io("talking to moto_server", e);
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(io)?;
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        );
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(io)?;
        let answer = String::from_utf8_lossy(&answer);
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok((status, body.to_string()))
    }
}
