//! SMTP servers of one's own: aiosmtpd (Debian's `python3-aiosmtpd`) run by
//! `smtp_server.py` on a free loopback port, keeping each message it accepts as a JSON file
//! with what Python's email package decodes of it; and one that accepts connections and
//! never says a word.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use crate::TestbedError;

/// The script, carried in the binary so that it runs wherever the tests were built.
const SCRIPT: &str = include_str!("../smtp_server.py");
/// How long the interpreter may take to import aiosmtpd and listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often `wait_for` looks at the directory: files have no notification channel here.
const POLL: Duration = Duration::from_millis(50);
/// Connections `SilentSmtp` accepts and holds; later ones wait in the kernel's backlog,
/// which to a client is silence all the same.
const SILENT_CONNECTIONS: usize = 1_024;

// Fields drop in order: the script is killed before its directory is removed.
pub struct OwnSmtp {
    _child: Child,
    /// The script's stdin: it exits when this closes, so it dies with this process even
    /// when the kill on drop never runs (the test process killed outright).
    _stdin: ChildStdin,
    /// The script, its messages (`mail/`) and its stderr (`stderr`).
    dir: tempfile::TempDir,
    port: u16,
}

/// A message the SMTP server accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct Mail {
    /// The envelope's sender (`MAIL FROM`).
    pub from: String,
    /// The envelope's recipients that were accepted (`RCPT TO`).
    pub to: Vec<String>,
    /// Decoded (RFC 2047); empty when there is none.
    pub subject: String,
    /// The text/plain body, decoded (transfer encoding and charset), lines ending in "\n";
    /// in a multipart/alternative, its text part. Empty when there is none.
    pub body: String,
    /// The text/html body, decoded likewise, when there is one.
    pub html: Option<String>,
    /// Every header in order, values decoded (RFC 2047).
    pub headers: Vec<(String, String)>,
    /// What Python's email package found malformed: a correct message has none.
    pub defects: Vec<String>,
    /// The message as received (as UTF-8; bytes that are not become U+FFFD).
    pub raw: String,
}

impl Mail {
    /// The first header of that name (case-insensitive), decoded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(have, _)| have.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl OwnSmtp {
    /// Starts a server that accepts every recipient, and waits until it listens.
    pub async fn start() -> Result<OwnSmtp, TestbedError> {
        OwnSmtp::start_refusing(&[]).await
    }

    /// Starts a server that answers `550 5.1.1 mailbox unavailable` to RCPT TO any of
    /// `addresses` (case-insensitive), and waits until it listens.
    pub async fn start_refusing(addresses: &[&str]) -> Result<OwnSmtp, TestbedError> {
        let dir = tempfile::tempdir().map_err(|e| TestbedError::Io("a temporary directory", e))?;
        let script = dir.path().join("smtp_server.py");
        std::fs::write(&script, SCRIPT).map_err(|e| TestbedError::Io("writing the script", e))?;
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).map_err(|e| TestbedError::Io("the mail directory", e))?;
        let stderr_path = dir.path().join("stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| TestbedError::Io("the script's stderr", e))?;

        // Debian's interpreter: where python3-aiosmtpd installs (the PATH's may be another).
        let python =
            std::env::var_os("RENKEI_TEST_PYTHON").unwrap_or_else(|| "/usr/bin/python3".into());
        let mut command = Command::new(&python);
        command.arg(&script).arg("--dir").arg(&mail);
        for address in addresses {
            command.arg(format!("--refuse={address}"));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TestbedError::Missing(format!(
                    "{} (set RENKEI_TEST_PYTHON to another) could not run: {e}",
                    python.to_string_lossy()
                ))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(TestbedError::Missing("the script's stdin or stdout".into()));
        };

        // "READY <port>" once it listens: from then on the port accepts connections.
        let mut line = String::new();
        let mut stdout = tokio::io::BufReader::new(stdout);
        let read = tokio::time::timeout(START_TIMEOUT, stdout.read_line(&mut line)).await;
        let port = line
            .strip_prefix("READY ")
            .and_then(|port| port.trim().parse::<u16>().ok());
        if let (Ok(Ok(_)), Some(port)) = (&read, port) {
            return Ok(OwnSmtp {
                _child: child,
                _stdin: stdin,
                dir,
                port,
            });
        }
        // It exited, said something else or nothing in time: its stderr says why.
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let why = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let what = match read {
            Err(_) => format!("said nothing within {START_TIMEOUT:?}"),
            Ok(_) if line.is_empty() => "exited before listening".to_string(),
            Ok(_) => format!("said {line:?}, not READY <port>"),
        };
        Err(TestbedError::Missing(format!(
            "the SMTP server run by {} {what} (it needs Debian's python3-aiosmtpd): {why}",
            python.to_string_lossy()
        )))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>` (plain SMTP: no TLS, no authentication).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message accepted so far, in arrival order. A file that cannot be read shows
    /// as a message whose `defects` say why, so that nothing goes missing unnoticed.
    pub fn messages(&self) -> Vec<Mail> {
        read_messages(&self.dir.path().join("mail"))
    }

    /// Waits until at least `n` messages were accepted, or `timeout` passed; returns them
    /// all either way.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + timeout;
        let turns = timeout.as_millis() / POLL.as_millis() + 1;
        for _ in 0..turns {
            let messages = self.messages();
            if messages.len() >= n || tokio::time::Instant::now() >= deadline {
                return messages;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::time::sleep(POLL.min(left)).await;
        }
        self.messages()
    }
}

fn read_messages(dir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    // Temporary files start with a dot; finished ones are <arrival number>.json.
    let mut names: Vec<_> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
        .collect();
    names.sort();
    names
        .iter()
        .map(|name| {
            std::fs::read(dir.join(name))
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<Mail>(&bytes).map_err(|e| e.to_string()))
                .unwrap_or_else(|why| Mail {
                    defects: vec![format!("{name} could not be read: {why}")],
                    ..Mail::default()
                })
        })
        .collect()
}

/// An SMTP server that hangs: it accepts TCP connections and never says anything.
pub struct SilentSmtp {
    port: u16,
    /// Holds the connections; aborted (closing them) on drop.
    holder: JoinHandle<()>,
}

impl SilentSmtp {
    pub async fn start() -> Result<SilentSmtp, TestbedError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestbedError::Io("binding the silent SMTP server", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestbedError::Io("the silent SMTP server's port", e))?
            .port();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..SILENT_CONNECTIONS {
                if let Ok((connection, _)) = listener.accept().await {
                    held.push(connection);
                }
            }
            // Keeps them (and the listener's backlog) open until dropped.
            std::future::pending::<()>().await;
        });
        Ok(SilentSmtp { port, holder })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentSmtp {
    fn drop(&mut self) {
        self.holder.abort();
    }
}
