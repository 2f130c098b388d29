//! What the load runs against: a `renkei` process on a fresh database, or the bare hub,
//! each spawned as its own process so that its memory and CPU can be read; or `renkei`
//! nodes someone else started, whose memory and CPU come from their `/metrics` (on their
//! metrics address, `--metrics-url`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::Connection as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Why a target could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{0} exited before listening")]
    NoAddress(String),
    #[error("database: {0}")]
    Database(String),
    #[error("{0} is not a server address (http://host:port)")]
    Address(String),
}

/// Where the server keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database created on this PostgreSQL server (admin URL), dropped afterwards.
    Postgres(String),
}

/// A fresh database for one run.
pub struct FreshDb {
    pub url: String,
    pub label: &'static str,
    /// A directory of the run's own, also the servers' data directory (uploads in
    /// progress, files).
    dir: Option<tempfile::TempDir>,
    /// (admin URL, database name) to drop afterwards.
    drop: Option<(String, String)>,
}

impl FreshDb {
    pub async fn create(database: &Database) -> Result<FreshDb, TargetError> {
        match database {
            Database::Sqlite => {
                let dir = tempfile::tempdir().map_err(|e| TargetError::Database(e.to_string()))?;
                let url = format!("sqlite://{}", dir.path().join("renkei.db").display());
                Ok(FreshDb {
                    url,
                    label: "renkei-sqlite",
                    dir: Some(dir),
                    drop: None,
                })
            }
            Database::Postgres(admin) => {
                let name = format!(
                    "renkei_load_{}_{}",
                    std::process::id(),
                    renkei_domain::clock::now_ms()
                );
                let mut conn = sqlx::PgConnection::connect(admin)
                    .await
                    .map_err(|e| TargetError::Database(e.to_string()))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| TargetError::Database(e.to_string()))?;
                // The new database's name replaces the admin URL's; its parameters
                // (`?sslmode=…&sslrootcert=/path`) stay.
                let (admin_base, query) = admin
                    .split_once('?')
                    .map_or((admin.as_str(), String::new()), |(b, q)| {
                        (b, format!("?{q}"))
                    });
                let base = admin_base.rsplit_once('/').map_or(admin_base, |(b, _)| b);
                let dir = tempfile::tempdir().map_err(|e| TargetError::Database(e.to_string()))?;
                Ok(FreshDb {
                    url: format!("{base}/{name}{query}"),
                    label: "renkei-postgres",
                    dir: Some(dir),
                    drop: Some((admin.clone(), name)),
                })
            }
        }
    }

    /// Drops a PostgreSQL database created for the run.
    pub async fn remove(self) {
        if let Some((admin, name)) = &self.drop {
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// A server's resident memory and CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub rss_kib: u64,
    pub cpu_seconds: f64,
}

/// Log lines kept of a server's warnings and errors: the first few whole, all counted.
const PROBLEMS_KEPT: usize = 20;

/// What a server this tool started logged at WARN or ERROR (or printed that is not a log
/// line at all, such as a panic): a run that looks fine in its figures may not be.
#[derive(Debug, Clone, Default)]
pub struct Problems {
    pub count: u64,
    pub first: Vec<String>,
}

/// A server the load runs against.
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
    /// True for the bare hub, which identifies users by `?user=` instead of a session.
    pub bare: bool,
    /// The process, when this tool started it; `None` for a server given by its URL.
    child: Option<Child>,
    /// Where a server given by its URL serves `/metrics` (its `RENKEI_METRICS_LISTEN`).
    metrics: Option<SocketAddr>,
    problems: Arc<Mutex<Problems>>,
}

impl Target {
    /// Starts `renkei` on `db_url` with the given extra environment.
    pub async fn renkei(
        bin: &Path,
        db: &FreshDb,
        env: &[(&str, String)],
    ) -> Result<Target, TargetError> {
        let mut command = Command::new(bin);
        command
            .env("RENKEI_LISTEN", "127.0.0.1:0")
            // Several nodes on one host: each its own metrics port (its usage comes from
            // `/proc`, not from its metrics).
            .env("RENKEI_METRICS_LISTEN", "127.0.0.1:0")
            .env("RENKEI_DATABASE_URL", &db.url)
            .env("RENKEI_LOG_FORMAT", "json")
            // Every simulated user connects from 127.0.0.1: a per-address limit meant
            // for a facility's NAT would throttle the whole population.
            .env("RENKEI_ADDRESS_REQUESTS_PER_SECOND", "1000000")
            .env("RENKEI_ADDRESS_REQUEST_BURST", "1000000")
            .env("RUST_LOG", "warn,renkei::node=info");
        if let Some(dir) = &db.dir {
            command.env("RENKEI_DATA_DIR", dir.path());
        }
        for (key, value) in env {
            command.env(key, value);
        }
        Self::start(command, db.label.to_string(), false).await
    }

    /// Starts the bare hub (this same executable, `bare-hub`).
    pub async fn bare(self_exe: &Path) -> Result<Target, TargetError> {
        let mut command = Command::new(self_exe);
        command.arg("bare-hub").arg("--listen").arg("127.0.0.1:0");
        Self::start(command, "bare".into(), true).await
    }

    async fn start(mut command: Command, label: String, bare: bool) -> Result<Target, TargetError> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TargetError::Spawn(label.clone(), e))?;
        // Both print a line holding `"listening"` and the address: renkei a JSON log line on
        // stderr, the bare hub `listening <addr>` on stdout.
        let stderr = BufReader::new(
            child
                .stderr
                .take()
                .ok_or_else(|| TargetError::NoAddress(label.clone()))?,
        );
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| TargetError::NoAddress(label.clone()))?,
        );
        let (found_tx, mut found_rx) = tokio::sync::mpsc::channel(2);
        let problems = Arc::new(Mutex::new(Problems::default()));
        tokio::spawn(watch(stderr, found_tx.clone(), Arc::clone(&problems)));
        tokio::spawn(watch(stdout, found_tx.clone(), Arc::clone(&problems)));
        drop(found_tx);
        let addr = tokio::time::timeout(Duration::from_secs(120), found_rx.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| TargetError::NoAddress(label.clone()))?;
        Ok(Target {
            label,
            addr,
            bare,
            child: Some(child),
            metrics: None,
            problems,
        })
    }

    /// A `renkei` node this tool did not start, at `url` (`http://host:port` or
    /// `host:port`; plain HTTP: put the load generator where it reaches the nodes directly),
    /// with its metrics address (`RENKEI_METRICS_LISTEN`) if its usage is to be reported.
    pub async fn external(url: &str, metrics: Option<&str>) -> Result<Target, TargetError> {
        let (host, addr) = resolve(url).await?;
        let metrics = match metrics {
            Some(url) => Some(resolve(url).await?.1),
            None => None,
        };
        Ok(Target {
            label: format!("renkei@{host}"),
            addr,
            bare: false,
            child: None,
            metrics,
            problems: Arc::default(),
        })
    }

    /// Resident memory and CPU time so far, from `/proc` for a process this tool started,
    /// else from the node's `/metrics` (zero when unknown).
    pub async fn usage(&self) -> Usage {
        let process = match &self.child {
            Some(child) => child.id().and_then(renkei::metrics::Process::of),
            None => self.metrics_usage().await,
        };
        process.map_or(Usage::default(), |p| Usage {
            rss_kib: u64::try_from(p.resident_bytes / 1024).unwrap_or(0),
            cpu_seconds: p.cpu_milliseconds as f64 / 1000.0,
        })
    }

    /// The most resident memory the process ever had (`VmHWM`), for a process this tool
    /// started.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// The node's own account of its memory and CPU, from one scrape of `/metrics`.
    async fn metrics_usage(&self) -> Option<renkei::metrics::Process> {
        let url = format!("http://{}/metrics", self.metrics?);
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        Some(renkei::metrics::Process {
            resident_bytes: metric_value(&text, "renkei_process_resident_memory_bytes")? as i64,
            cpu_milliseconds: metric_value(&text, "renkei_process_cpu_milliseconds_total")? as u64,
        })
    }

    /// The warnings and errors the server logged so far (none known for a server this tool
    /// did not start).
    pub fn problems(&self) -> Problems {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the process if this tool started it (SIGKILL; the run's data is thrown away).
    pub async fn stop(self) {
        if let Some(mut child) = self.child {
            let _ = child.kill().await;
        }
    }
}

/// The host and address of `url` (`http://host:port` or `host:port`).
async fn resolve(url: &str) -> Result<(String, SocketAddr), TargetError> {
    let host = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains("://") {
        return Err(TargetError::Address(url.into()));
    }
    let addr = tokio::net::lookup_host(host)
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| TargetError::Address(url.into()))?;
    Ok((host.to_string(), addr))
}

/// The value of the sample `name` in a Prometheus/OpenMetrics text exposition.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// Reads a child's output to its end, reporting the address it says it listens on and
/// keeping what it says of problems.
async fn watch<R: tokio::io::AsyncBufRead + Unpin>(
    output: R,
    found: tokio::sync::mpsc::Sender<SocketAddr>,
    problems: Arc<Mutex<Problems>>,
) {
    let mut lines = output.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(addr) = listening_address(&line) {
            let _ = found.send(addr).await;
        } else if is_problem(&line) {
            let mut problems = problems.lock().unwrap_or_else(PoisonError::into_inner);
            problems.count += 1;
            if problems.first.len() < PROBLEMS_KEPT {
                problems.first.push(line);
            }
        }
    }
}

/// A JSON log line at WARN or ERROR, or a line that is not a log line at all (a panic's
/// message, say); the bare hub's `listening` line and INFO lines are not.
fn is_problem(line: &str) -> bool {
    if line.trim().is_empty() {
        return false;
    }
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(entry) => matches!(entry["level"].as_str(), Some("WARN" | "ERROR")),
        Err(_) => !line.starts_with("listening "),
    }
}

fn listening_address(line: &str) -> Option<SocketAddr> {
    if let Some(rest) = line.strip_prefix("listening ") {
        return rest.trim().parse().ok();
    }
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    if entry["fields"]["message"] != "listening" {
        return None;
    }
    entry["fields"]["addr"].as_str()?.parse().ok()
}

/// The `renkei` binary next to this executable, where cargo builds both.
pub fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("renkei")))
        .unwrap_or_else(|| PathBuf::from("renkei"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_either_log_format() {
        let json = r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","addr":"127.0.0.1:4321"},"target":"renkei::node"}"#;
        assert_eq!(
            listening_address(json),
            Some("127.0.0.1:4321".parse().expect("addr"))
        );
        assert_eq!(
            listening_address("listening 127.0.0.1:99"),
            Some("127.0.0.1:99".parse().expect("addr"))
        );
        assert_eq!(
            listening_address(r#"{"fields":{"message":"starting"}}"#),
            None
        );
    }

    #[test]
    fn keeps_warnings_errors_and_stray_output() {
        assert!(is_problem(
            r#"{"level":"WARN","fields":{"message":"cannot claim pushes"}}"#
        ));
        assert!(is_problem(r#"{"level":"ERROR","fields":{"message":"x"}}"#));
        assert!(is_problem("thread 'main' panicked at src/x.rs:1:1"));
        assert!(!is_problem(r#"{"level":"INFO","fields":{"message":"x"}}"#));
        assert!(!is_problem("listening 127.0.0.1:1"));
        assert!(!is_problem("  "));
    }

    #[test]
    fn reads_a_metric_from_the_exposition() {
        let text = "# HELP renkei_process_resident_memory_bytes x\n\
                    renkei_process_resident_memory_bytes_extra 1\n\
                    renkei_process_resident_memory_bytes 4096\n";
        assert_eq!(
            metric_value(text, "renkei_process_resident_memory_bytes"),
            Some(4096.0)
        );
        assert_eq!(metric_value(text, "renkei_connections"), None);
    }

    #[tokio::test]
    async fn takes_a_node_by_its_url() {
        for url in [
            "http://127.0.0.1:8080",
            "127.0.0.1:8080",
            "http://127.0.0.1:8080/",
        ] {
            let target = Target::external(url, None).await.expect(url);
            assert_eq!(target.addr, "127.0.0.1:8080".parse().expect("addr"));
            assert!(!target.bare);
        }
        for url in [
            "",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8080/x",
            "no port",
        ] {
            assert!(Target::external(url, None).await.is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn reads_the_usage_of_a_process_it_started() {
        let child = Command::new("sleep")
            .arg("5")
            .kill_on_drop(true)
            .spawn()
            .expect("sleep");
        let target = Target {
            label: "sleep".into(),
            addr: "127.0.0.1:9".parse().expect("addr"),
            bare: false,
            child: Some(child),
            metrics: None,
            problems: Arc::default(),
        };
        assert!(target.usage().await.rss_kib > 0);
        target.stop().await;
    }
}
