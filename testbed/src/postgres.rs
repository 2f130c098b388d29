//! A PostgreSQL cluster of one's own: `initdb` into a temporary directory and a free
//! loopback port. Run as root, the server runs as the `postgres` user (it refuses root).
//! [`OwnPostgres::start_tls`] starts one that accepts only TLS over TCP, with a
//! certificate for `127.0.0.1` signed by an authority of its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Connection as _;
use tokio::process::{Child, Command};

use crate::TestbedError;

pub struct OwnPostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// With TLS: the authority's certificate (PEM file) clients must trust.
    ca_file: Option<PathBuf>,
}

impl OwnPostgres {
    /// Creates the cluster and starts it.
    pub async fn start() -> Result<OwnPostgres, TestbedError> {
        OwnPostgres::create(false).await
    }

    /// Creates a cluster that refuses TCP connections without TLS (`hostssl` only) and
    /// presents a certificate for `127.0.0.1` signed by [`Self::ca_file`]'s authority;
    /// [`Self::url`] then asks for `sslmode=verify-full` against that file.
    pub async fn start_tls() -> Result<OwnPostgres, TestbedError> {
        OwnPostgres::create(true).await
    }

    async fn create(tls: bool) -> Result<OwnPostgres, TestbedError> {
        let bin = postgres_bin()?;
        let dir = tempfile::tempdir().map_err(|e| TestbedError::Io("a temporary directory", e))?;
        if let Some((uid, gid)) = postgres_user()? {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| TestbedError::Io("chown of the cluster's directory", e))?;
        }
        let data = dir.path().join("data");
        let status = as_postgres(&bin.join("initdb"), dir.path())?
            .args(["-D", &data.to_string_lossy()])
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| TestbedError::Io("initdb", e))?;
        if !status.success() {
            return Err(TestbedError::Missing(format!("initdb failed: {status}")));
        }
        let ca_file = if tls {
            Some(certify(dir.path(), &data)?)
        } else {
            None
        };
        let mut pg = OwnPostgres {
            port: crate::free_port()?,
            bin,
            dir,
            child: None,
            ca_file,
        };
        pg.resume().await?;
        Ok(pg)
    }

    /// The URL of its `postgres` database (an admin URL: databases can be created on it).
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of `database` on it; with TLS, verifying the server's certificate and name.
    pub fn url_of(&self, database: &str) -> String {
        let url = format!("postgres://postgres@127.0.0.1:{}/{database}", self.port);
        match &self.ca_file {
            Some(ca) => format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display()),
            None => url,
        }
    }

    /// With TLS, the PEM file of the authority that signed the server's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Starts the server again on the same data and port, and waits until it answers.
    pub async fn resume(&mut self) -> Result<(), TestbedError> {
        if self.child.is_some() {
            return Ok(());
        }
        let mut command = as_postgres(&self.bin.join("postgres"), self.dir.path())?;
        command
            .args(["-D", &self.dir.path().join("data").to_string_lossy()])
            .args(["-p", &self.port.to_string()])
            .args(["-k", &self.dir.path().to_string_lossy()])
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=100",
            ]);
        if self.ca_file.is_some() {
            let file = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
            command.args(["-c", "ssl=on"]);
            command.args(["-c", &format!("ssl_cert_file={}", file(SERVER_CERT))]);
            command.args(["-c", &format!("ssl_key_file={}", file(SERVER_KEY))]);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| TestbedError::Io("starting postgres", e))?;
        self.child = Some(child);
        // With TLS, readiness is asked over the Unix socket: the testbed's own sqlx has no
        // TLS, so that the server's tests show the server's own build speaks it.
        let probe = match self.ca_file {
            None => self.url(),
            Some(_) => format!(
                "postgres://postgres@localhost:{}/postgres?host={}",
                self.port,
                self.dir.path().display()
            ),
        };
        for _ in 0..300 {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&probe).await {
                if sqlx::query("SELECT 1").execute(&mut conn).await.is_ok() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(TestbedError::NotReady("postgres", self.port))
    }

    /// Immediate shutdown (`SIGQUIT`): every connection drops at once and nothing is
    /// flushed beyond what was committed, as when the database server crashes.
    pub async fn crash(&mut self) -> Result<(), TestbedError> {
        let mut child = self
            .child
            .take()
            .ok_or(TestbedError::NotRunning("postgres"))?;
        let pid = child.id().ok_or(TestbedError::NotRunning("postgres"))?;
        let status = std::process::Command::new("kill")
            .args(["-QUIT", &pid.to_string()])
            .status()
            .map_err(|e| TestbedError::Io("kill -QUIT postgres", e))?;
        if !status.success() {
            return Err(TestbedError::NotRunning("postgres"));
        }
        child
            .wait()
            .await
            .map(|_| ())
            .map_err(|e| TestbedError::Io("waiting for postgres", e))
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // SIGQUIT rather than the SIGKILL of kill_on_drop: the postmaster takes its
        // backends with it.
        if let Some(pid) = self.child.as_ref().and_then(|child| child.id()) {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
        }
    }
}

const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

/// Makes an authority and a server certificate for `127.0.0.1` in `dir`, and lets TCP
/// clients in only over TLS. Returns the authority's file.
fn certify(dir: &Path, data: &Path) -> Result<PathBuf, TestbedError> {
    use std::os::unix::fs::PermissionsExt as _;
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| TestbedError::Io("writing TLS files", e))
    };
    let ca = crate::TestCa::new("Renkei testbed PostgreSQL CA")?;
    let server = ca.issue(&["127.0.0.1"])?;
    let ca_file = dir.join("ca.pem");
    ca.write_pem(&ca_file)?;
    write(&dir.join(SERVER_CERT), &server.cert_pem)?;
    let key = dir.join(SERVER_KEY);
    write(&key, &server.key_pem)?;
    // PostgreSQL refuses a key others can read, and must own it.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| TestbedError::Io("chmod of the server's key", e))?;
    if let Some((uid, gid)) = postgres_user()? {
        for name in [SERVER_CERT, SERVER_KEY, "ca.pem"] {
            std::os::unix::fs::chown(dir.join(name), Some(uid), Some(gid))
                .map_err(|e| TestbedError::Io("chown of the TLS files", e))?;
        }
    }
    // Overwriting keeps initdb's owner and mode.
    write(
        &data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )?;
    Ok(ca_file)
}

/// Where the PostgreSQL server binaries are: the newest Debian version unless configured
/// (`RENKEI_TEST_POSTGRES_BIN`).
fn postgres_bin() -> Result<PathBuf, TestbedError> {
    if let Ok(bin) = std::env::var("RENKEI_TEST_POSTGRES_BIN") {
        return Ok(bin.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        TestbedError::Missing(
            "no PostgreSQL server binaries under /usr/lib/postgresql (Debian package \
             postgresql); set RENKEI_TEST_POSTGRES_BIN"
                .into(),
        )
    })
}

/// The `postgres` user's uid and gid when running as root.
fn postgres_user() -> Result<Option<(u32, u32)>, TestbedError> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self")
        .map_err(|e| TestbedError::Io("/proc/self", e))?
        .uid();
    if me != 0 {
        return Ok(None);
    }
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| TestbedError::Io("/etc/passwd", e))?;
    let fields: Vec<&str> = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .ok_or_else(|| TestbedError::Missing("a postgres user (Debian package postgresql)".into()))?
        .split(':')
        .collect();
    let id = |i: usize| fields.get(i).and_then(|f| f.parse().ok());
    match (id(2), id(3)) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => Err(TestbedError::Missing(
            "the postgres user's ids in /etc/passwd".into(),
        )),
    }
}

/// A command that runs `program` as the `postgres` user when running as root.
fn as_postgres(program: &Path, dir: &Path) -> Result<Command, TestbedError> {
    let mut command = match postgres_user()? {
        Some((uid, gid)) => {
            // setpriv execs the program itself, so signals reach PostgreSQL directly.
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(program);
            command
        }
        None => Command::new(program),
    };
    command.current_dir(dir);
    Ok(command)
}
