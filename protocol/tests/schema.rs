//! The committed JSON Schema must match the protocol types. Regenerate it with
//! `RENKEI_UPDATE_SCHEMA=1 cargo test -p renkei-protocol --test schema`.

use std::path::PathBuf;

#[test]
fn committed_schema_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/renkei-protocol.schema.json");
    let generated = serde_json::to_string_pretty(&renkei_protocol::json_schema())
        .expect("schema serializes")
        + "\n";
    if std::env::var_os("RENKEI_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run RENKEI_UPDATE_SCHEMA=1 cargo test -p renkei-protocol --test schema",
        path.display()
    );
}
