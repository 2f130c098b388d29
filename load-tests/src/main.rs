//! `renkei-load`: measures Renkei from nothing. It creates its own population, spawns the
//! `renkei` binary on a fresh database (and, with `--bare`, the bare reference hub), runs a
//! scenario open-loop, and checks that every acknowledged post reached every other member
//! exactly once. `--json` ends the output with one JSON object per line, the last one ours.
//!
//! `renkei-load push` measures Web Push the same way, against `renkei-testbed`'s push
//! service: see `push.rs`.
//!
//! Against nodes it did not start: `renkei-load populate` creates a population in their
//! database (before they start, since nodes load memberships at start) and saves it to a
//! file; every scenario then takes `--url` once per node and `--population FILE`.

mod bare;
mod hostile;
mod member;
mod plot;
mod population;
mod push;
mod report;
mod scenario;
mod soak;
mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use population::{Extras, Population};
use report::Report;
use scenario::{Scenario, Spec};
use target::{Database, FreshDb, Target};

#[derive(Debug, Parser)]
#[command(name = "renkei-load", about = "Load generator for Renkei")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N authenticated idle sockets: server memory per connection.
    Connections {
        /// Idle sockets to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[command(flatten)]
        common: Common,
    },
    /// G groups of M members, one socket each, posts by random members at a target rate.
    Fanout {
        #[command(flatten)]
        traffic: Traffic,
        #[command(flatten)]
        common: Common,
    },
    /// Logins per second while fan-out runs.
    LoginStorm {
        #[command(flatten)]
        traffic: Traffic,
        /// Logins per second.
        #[arg(long, default_value_t = 100.0)]
        login_rate: f64,
        /// Seconds of logins, starting a quarter into the run.
        #[arg(long, default_value_t = 10.0)]
        login_seconds: f64,
        #[command(flatten)]
        common: Common,
    },
    /// The fan-out while a hostile client misbehaves for a window a quarter into the run:
    /// the members' delivery p99 in that window, and what the intruder met.
    Hostile {
        #[arg(long, value_enum)]
        attack: hostile::Attack,
        /// Seconds of the attack.
        #[arg(long, default_value_t = 20.0)]
        attack_seconds: f64,
        #[command(flatten)]
        traffic: Traffic,
        #[command(flatten)]
        common: Common,
    },
    /// Mixed traffic on two nodes over a PostgreSQL and a Redis of its own while a node is
    /// killed, Redis restarted and PostgreSQL crashed in turn; ends with the check over
    /// every acknowledged post, the memory of the node never killed and the audit chain.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        #[arg(long, default_value_t = 50)]
        groups: usize,
        #[arg(long, default_value_t = 8)]
        members: usize,
        /// Posts per second over everyone.
        #[arg(long, default_value_t = 40.0)]
        rate: f64,
        /// Seconds between faults.
        #[arg(long, default_value_t = 45.0)]
        fault_seconds: f64,
        /// A short soak for CI: 50 seconds, a fault every 10.
        #[arg(long)]
        quick: bool,
        /// End with the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// The `renkei` binary (default: next to this one).
        #[arg(long)]
        server_bin: Option<PathBuf>,
    },
    /// Web Push (issue 18): in each group one poster with a socket and members subscribed
    /// and away; posts at a rate; pushes/s, latency from commit to the push service's
    /// receipt, and lost, duplicates and coalescing violations (any fails the run).
    Push {
        #[arg(long, default_value_t = 1000)]
        groups: usize,
        /// Members per group: one poster, the rest subscribed and away.
        #[arg(long, default_value_t = 11)]
        members: usize,
        /// Posts per second over all groups, scheduled by the clock.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Seconds of traffic.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// At most one push per person and group per this many seconds (the server's
        /// RENKEI_PUSH_COALESCE_SECONDS).
        #[arg(long, default_value_t = 60)]
        coalesce_seconds: u32,
        /// Run on a fresh database on this PostgreSQL server (an admin URL) instead of SQLite.
        #[arg(long)]
        postgres: Option<String>,
        /// The `renkei` binary to measure (default: next to this one).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// End with the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// A CI-sized run on SQLite: 20 groups × 4 members, 50 posts/s for 6 s, a 2 s window.
        #[arg(long)]
        quick: bool,
    },
    /// Create a population in a deployment's database for runs with `--url`, and save it
    /// (session tokens included: keep the file private). Do it before the nodes start.
    Populate {
        /// The deployment's database (`postgres://…` or `sqlite://…`).
        #[arg(long)]
        database: String,
        #[arg(long, default_value_t = 1000)]
        groups: usize,
        #[arg(long, default_value_t = 10)]
        members: usize,
        /// Where to save the population.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the bare reference hub (used by `--bare`).
    BareHub {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Draw SVG charts from `--json` result lines.
    Plot {
        /// A file of result lines (one JSON object per line).
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
struct Traffic {
    #[arg(long, default_value_t = 1000)]
    groups: usize,
    #[arg(long, default_value_t = 10)]
    members: usize,
    /// Posts per second, scheduled by the clock.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Bytes of filler text per post.
    #[arg(long, default_value_t = 100)]
    post_bytes: usize,
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// Run on a fresh database on this PostgreSQL server (an admin URL) instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// The `renkei` binary to measure (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Run this many renkei nodes on one PostgreSQL (`--postgres`) and Redis (`--redis`),
    /// members spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The Redis URL the nodes fan out through (with `--nodes` above 1).
    #[arg(long)]
    redis: Option<String>,
    /// Also run the same scenario against the bare hub, first, in the same run.
    #[arg(long)]
    bare: bool,
    /// End with one JSON object per run, one per line.
    #[arg(long)]
    json: bool,
    /// A short run (at most 30 s) on SQLite for CI: asserts lost = 0 and duplicates = 0.
    #[arg(long)]
    quick: bool,
    /// Extra `KEY=VALUE` environment for the renkei server (repeatable).
    #[arg(long = "server-env", value_parser = parse_env)]
    server_env: Vec<(String, String)>,
    /// A node this tool did not start (`http://host:port`), once per node: members are
    /// spread over them. Needs `--population`; the scenario's sizes come from that file.
    #[arg(long = "url", requires = "population", conflicts_with_all = ["postgres", "nodes", "redis", "server_bin", "server_env"])]
    urls: Vec<String>,
    /// The metrics address (`RENKEI_METRICS_LISTEN`, `http://host:port`) of each `--url`,
    /// in the same order, for the nodes' memory and CPU in the report.
    #[arg(long = "metrics-url", requires = "urls")]
    metrics_urls: Vec<String>,
    /// A population saved by `renkei-load populate` in the nodes' database.
    #[arg(long, requires = "urls")]
    population: Option<PathBuf>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[allow(clippy::print_stdout)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    // Thousands of sockets on both ends need descriptors; the server inherits the limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("renkei-load: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (spec, groups, members, common) = match cli.command {
            Command::BareHub { listen } => {
                return match tokio::net::TcpListener::bind(listen).await {
                    Ok(listener) => {
                        match listener.local_addr() {
                            Ok(addr) => println!("listening {addr}"),
                            Err(err) => eprintln!("renkei-load: {err}"),
                        }
                        match bare::serve(listener).await {
                            Ok(()) => ExitCode::SUCCESS,
                            Err(err) => {
                                eprintln!("renkei-load bare-hub: {err}");
                                ExitCode::FAILURE
                            }
                        }
                    }
                    Err(err) => {
                        eprintln!("renkei-load bare-hub: {err}");
                        ExitCode::FAILURE
                    }
                };
            }
            Command::Populate {
                database,
                groups,
                members,
                out,
            } => {
                return match populate(&database, groups, members, &out).await {
                    Ok(people) => {
                        println!(
                            "{people} people in {groups} groups saved to {}",
                            out.display()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(err) => {
                        eprintln!("renkei-load populate: {err}");
                        ExitCode::FAILURE
                    }
                };
            }
            Command::Soak {
                minutes,
                groups,
                members,
                rate,
                fault_seconds,
                quick,
                json,
                server_bin,
            } => {
                let spec = if quick {
                    soak::Spec {
                        seconds: 50.0,
                        groups: 10,
                        members: 4,
                        rate: 20.0,
                        fault_every: 10.0,
                    }
                } else {
                    soak::Spec {
                        seconds: minutes * 60.0,
                        groups,
                        members: members.max(2),
                        rate,
                        fault_every: fault_seconds,
                    }
                };
                let bin = server_bin.unwrap_or_else(target::default_server_bin);
                return match soak::run(&spec, &bin).await {
                    Ok(report) => {
                        println!("soak against {}:\n{}", report.target, report::table(&report));
                        if json {
                            println!("{}", serde_json::to_string(&report).unwrap_or_default());
                        }
                        if report.passed() {
                            ExitCode::SUCCESS
                        } else {
                            eprintln!("renkei-load soak: the check failed (lost, undelivered, duplicates, order, memory or audit)");
                            ExitCode::FAILURE
                        }
                    }
                    Err(err) => {
                        eprintln!("renkei-load soak: {err}");
                        ExitCode::FAILURE
                    }
                };
            }
            Command::Push {
                groups,
                members,
                rate,
                duration,
                coalesce_seconds,
                postgres,
                server_bin,
                json,
                quick,
            } => {
                let bin = server_bin.unwrap_or_else(target::default_server_bin);
                let spec = if quick {
                    push::Spec::quick(bin)
                } else {
                    push::Spec {
                        groups,
                        members,
                        rate,
                        duration,
                        coalesce_seconds,
                        database: postgres.map_or(Database::Sqlite, Database::Postgres),
                        server_bin: bin,
                    }
                };
                return match push::run(&spec).await {
                    Ok((report, problems)) => {
                        println!("push against {}:\n{}", report.target, report::table(&report));
                        for line in &problems.first {
                            eprintln!("renkei-load push: the server logged: {line}");
                        }
                        if json {
                            println!("{}", serde_json::to_string(&report).unwrap_or_default());
                        }
                        if report.passed() {
                            ExitCode::SUCCESS
                        } else {
                            eprintln!("renkei-load push: the check failed (lost, duplicates, misdirected or coalescing violations)");
                            ExitCode::FAILURE
                        }
                    }
                    Err(err) => {
                        eprintln!("renkei-load push: {err}");
                        ExitCode::FAILURE
                    }
                };
            }
            Command::Plot { input, output } => {
                let written = std::fs::read_to_string(&input)
                    .and_then(|text| std::fs::write(&output, plot::svg(&text)));
                return match written {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("renkei-load plot: {err}");
                        ExitCode::FAILURE
                    }
                };
            }
            Command::Connections {
                connections,
                common,
            } => {
                let members = 10.min(connections.max(1));
                let spec = Spec {
                    scenario: Scenario::Connections,
                    rate: 0.0,
                    duration: if common.quick { 2.0 } else { 10.0 },
                    login_rate: 0.0,
                    window_seconds: 0.0,
                    post_bytes: 0,
                };
                let connections = if common.quick { 200 } else { connections };
                (spec, connections.div_ceil(members), members, common)
            }
            Command::Fanout { traffic, common } => {
                fanout_spec(Scenario::Fanout, traffic, 0.0, 0.0, common)
            }
            Command::LoginStorm {
                traffic,
                login_rate,
                login_seconds,
                common,
            } => fanout_spec(
                Scenario::LoginStorm,
                traffic,
                login_rate,
                login_seconds,
                common,
            ),
            Command::Hostile {
                attack,
                attack_seconds,
                traffic,
                common,
            } => {
                if !common.urls.is_empty() {
                    eprintln!("renkei-load hostile: needs a population of its own (no --url)");
                    return ExitCode::FAILURE;
                }
                fanout_spec(
                    Scenario::Hostile(attack),
                    traffic,
                    0.0,
                    attack_seconds,
                    common,
                )
            }
        };
        match measure(&spec, groups, members, &common).await {
            Ok(reports) => {
                for report in &reports {
                    println!(
                        "{} against {}:\n{}",
                        report.scenario,
                        report.target,
                        report.table()
                    );
                }
                if common.json {
                    for report in &reports {
                        println!("{}", serde_json::to_string(report).unwrap_or_default());
                    }
                }
                if reports.iter().all(Report::correct) {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("renkei-load: posts were lost or duplicated");
                    ExitCode::FAILURE
                }
            }
            Err(err) => {
                eprintln!("renkei-load: {err}");
                ExitCode::FAILURE
            }
        }
    })
}

fn fanout_spec(
    scenario: Scenario,
    traffic: Traffic,
    login_rate: f64,
    window_seconds: f64,
    common: Common,
) -> (Spec, usize, usize, Common) {
    let (groups, members, rate, duration) = if common.quick {
        (50, 5, 200.0, 6.0)
    } else {
        (
            traffic.groups,
            traffic.members,
            traffic.rate,
            traffic.duration,
        )
    };
    let (login_rate, window_seconds) = match scenario {
        Scenario::LoginStorm if common.quick => (10.0, 3.0),
        Scenario::Hostile(_) if common.quick => (0.0, 3.0),
        _ => (login_rate, window_seconds),
    };
    let spec = Spec {
        scenario,
        rate,
        duration,
        login_rate,
        window_seconds,
        post_bytes: traffic.post_bytes,
    };
    (spec, groups, members, common)
}

/// Creates `groups` × `members` people in the database at `url` and saves them to `out`.
async fn populate(url: &str, groups: usize, members: usize, out: &Path) -> Result<usize, String> {
    if groups == 0 || members < 2 {
        return Err("a population needs at least one group of two members".into());
    }
    let store = renkei::store::open(url).await.map_err(|e| e.to_string())?;
    let population = Population::create(store.as_ref(), groups, members, Extras::default())
        .await
        .map_err(|e| e.to_string())?;
    population.save(out)?;
    Ok(population.people.len())
}

/// Runs the scenario against the bare hub (with `--bare`) and then renkei.
async fn measure(
    spec: &Spec,
    groups: usize,
    members: usize,
    common: &Common,
) -> Result<Vec<Report>, String> {
    // A saved population, for nodes this tool did not start, sets the scenario's size.
    let given = common
        .population
        .as_deref()
        .map(Population::load)
        .transpose()?;
    let (groups, members) = given
        .as_ref()
        .map_or((groups, members), |p| (p.groups, p.members));
    let mut reports = Vec::new();
    if common.bare {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let bare = Target::bare(&exe).await.map_err(|e| e.to_string())?;
        let bare = [bare];
        reports.push(scenario::run(&bare, &Population::synthetic(groups, members), spec).await);
        let [bare] = bare;
        bare.stop().await;
    }
    if let Some(population) = given {
        let mut servers = Vec::with_capacity(common.urls.len());
        if !common.metrics_urls.is_empty() && common.metrics_urls.len() != common.urls.len() {
            return Err("--metrics-url: one per --url, in the same order".into());
        }
        for (i, url) in common.urls.iter().enumerate() {
            let metrics = common.metrics_urls.get(i).map(String::as_str);
            servers.push(
                Target::external(url, metrics)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let mut ours = scenario::run(&servers, &population, spec).await;
        compare_with_bare(&mut ours, &reports);
        reports.push(ours);
        return Ok(reports);
    }
    let database = match &common.postgres {
        Some(url) if !common.quick => Database::Postgres(url.clone()),
        _ => Database::Sqlite,
    };
    let db = FreshDb::create(&database)
        .await
        .map_err(|e| e.to_string())?;
    let hostile = matches!(spec.scenario, Scenario::Hostile(_));
    let population = {
        let store = renkei::store::open(&db.url)
            .await
            .map_err(|e| e.to_string())?;
        let extras = Extras {
            intruder: hostile,
            admin: false,
        };
        Population::create(store.as_ref(), groups, members, extras)
            .await
            .map_err(|e| e.to_string())?
    };
    let bin = common
        .server_bin
        .clone()
        .unwrap_or_else(target::default_server_bin);
    let mut env: Vec<(&str, String)> = common
        .server_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let nodes = common.nodes.max(1);
    if nodes > 1 {
        let redis = common
            .redis
            .clone()
            .ok_or("--nodes above 1 needs --redis (and --postgres)")?;
        env.push(("RENKEI_REDIS_URL", redis));
        env.push((
            "RENKEI_REDIS_PREFIX",
            format!("renkei-load-{}", std::process::id()),
        ));
    }
    let mut servers = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        servers.push(
            Target::renkei(&bin, &db, &env)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let mut ours = scenario::run(&servers, &population, spec).await;
    for server in servers {
        server.stop().await;
    }
    db.remove().await;
    compare_with_bare(&mut ours, &reports);
    reports.push(ours);
    Ok(reports)
}

/// Records what share of the bare hub's deliveries/s (measured first, if at all) we reach.
fn compare_with_bare(ours: &mut Report, earlier: &[Report]) {
    if let Some(bare) = earlier.first() {
        ours.bare_deliveries_per_sec = Some(bare.deliveries_per_sec);
        ours.share_of_bare = Some(ours.deliveries_per_sec / bare.deliveries_per_sec.max(1e-9));
    }
}
