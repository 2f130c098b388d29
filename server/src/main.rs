//! The `renkei` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;
use renkei::config::{AuditCommand, Cli, Command};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(cli.config).await,
            Command::Demo { empty } => demo(cli.config, empty).await,
            Command::Archive { dry_run } => archive(cli.config, dry_run).await,
            Command::AddOperator { email, name } => add_operator(cli.config, &email, &name).await,
            Command::Audit(AuditCommand::Verify { anchor_files }) => {
                verify_audit(cli.config, anchor_files).await
            }
            Command::Backup { to } => backup(cli.config, &to).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "renkei failed");
            eprintln!("renkei: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RENKEI_LOG_FORMAT=json` for JSON lines, `RUST_LOG` to filter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("RENKEI_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(config: renkei::config::Config) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    renkei::run(listener, config, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
    shutdown.cancel();
}

#[allow(clippy::print_stdout)]
async fn demo(
    config: renkei::config::Config,
    empty: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = renkei::node::open_store(&config).await?;
    let files = renkei::files::FileStore::open(&config)?;
    let week = (!empty).then_some(&files);
    let logins = renkei::demo::seed(store.as_ref(), week).await?;
    print!("{}", renkei::demo::table(&logins));
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn backup(
    config: renkei::config::Config,
    to: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = renkei::node::open_store(&config).await?;
    store.backup(to).await?;
    println!("Backup written to {}", to.display());
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn add_operator(
    config: renkei::config::Config,
    email: &str,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = renkei::node::open_store(&config).await?;
    let (code, _) =
        renkei::account::add_operator(store.as_ref(), email, name, config.setup_code_hours).await?;
    println!(
        "Operator {email} created. Set the password within {} hours at POST /api/v1/password-setup \
         with this one-time code:\n\n  {code}",
        config.setup_code_hours
    );
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn verify_audit(
    config: renkei::config::Config,
    mut anchor_files: Vec<std::path::PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = renkei::node::open_store(&config).await?;
    let (records, head) = match renkei::audit::verify(store.as_ref()).await? {
        Ok(end) => end,
        Err(broken) => return Err(format!("audit trail broken: {broken}").into()),
    };
    let sealed = match renkei::seal::verify(store.as_ref()).await? {
        Ok(sealed) => sealed,
        Err(tampered) => return Err(format!("events tampered with: {tampered}").into()),
    };
    let head: String = head.iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "audit trail intact: {records} records, head {head}\n\
         events match their seals: {} events in {} seals ({} groups purged by retention)",
        sealed.events, sealed.seals, sealed.purged_groups
    );
    if anchor_files.is_empty() {
        anchor_files.extend(config.audit_anchor_file.clone());
    }
    for path in &anchor_files {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("anchor file {}: {err}", path.display()))?;
        match renkei::seal::check_anchors(store.as_ref(), &text).await? {
            Ok(matched) => println!(
                "anchors match: {matched} seals in {} agree with the database",
                path.display()
            ),
            Err(mismatch) => {
                return Err(
                    format!("audit trail differs from {}: {mismatch}", path.display()).into(),
                )
            }
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn archive(
    config: renkei::config::Config,
    dry_run: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    if !dry_run {
        return Err(
            "the archive process runs inside the server; --dry-run shows what it would do now"
                .into(),
        );
    }
    let store = renkei::node::open_store(&config).await?;
    print!(
        "{}",
        renkei::archive::dry_run(store.as_ref(), &config).await?
    );
    Ok(())
}
