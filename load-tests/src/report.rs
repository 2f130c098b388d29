//! What a run measured: a readable table and one JSON object.

use serde::Serialize;

/// The result of one scenario run against one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    /// `renkei-sqlite`, `renkei-postgres` or `bare`.
    pub target: String,
    pub connections: u64,
    pub groups: u64,
    pub members: u64,
    pub target_rate: f64,
    pub duration_s: f64,
    pub posts_sent: u64,
    pub posts_acked: u64,
    pub posts_per_sec: f64,
    pub deliveries_expected: u64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub server_rss_mib: f64,
    /// The most resident memory the servers this tool started ever had (their `VmHWM`):
    /// what a burst in the middle of the run took, even if it was given back since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_mib: Option<f64>,
    pub server_rss_per_conn_kib: f64,
    pub server_cpu_s: f64,
    /// Login storm: logins attempted, accepted, shed (429), and their latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logins: Option<LoginStats>,
    /// Delivery p99 of posts scheduled while the login storm ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_during_logins_ms: Option<f64>,
    /// Hostile: delivery p99 of posts scheduled while the intruder misbehaved, and what it
    /// did and met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_during_attack_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<crate::hostile::AttackStats>,
    /// Login storm and hostile: delivery p99 of the posts scheduled outside the window, in
    /// the same run (the window's own yardstick, on a machine whose speed drifts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_outside_window_ms: Option<f64>,
    /// With `--bare`: the bare hub's deliveries per second in the same run, and our share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bare_deliveries_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_of_bare: Option<f64>,
}

/// How a login storm went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoginStats {
    pub attempted: u64,
    pub ok: u64,
    pub shed: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Report {
    /// True when every acknowledged post reached every other member exactly once.
    pub fn correct(&self) -> bool {
        self.lost == 0 && self.duplicates == 0
    }

    /// The report as aligned `key value` lines.
    pub fn table(&self) -> String {
        table(self)
    }
}

/// Any report as aligned `key value` lines, one per field.
pub fn table(report: &impl Serialize) -> String {
    let value = serde_json::to_value(report).unwrap_or_default();
    let mut out = String::new();
    if let Some(map) = value.as_object() {
        for (key, v) in map {
            out.push_str(&format!("  {key:<26} {v}\n"));
        }
    }
    out
}
