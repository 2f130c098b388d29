//! The two engines' migrations make one schema: the same tables, each with the same
//! columns (by name, kind of value and whether they may be null), the same primary key,
//! the same unique constraints and the same indexes over the same columns. The store runs
//! one SQL text on both engines; this is what lets it mean the same on each.
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Backend, TestDb};
use sqlx::{Connection as _, Row as _};

/// A table as both engines can describe it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// Column → (kind of value, NOT NULL).
    columns: BTreeMap<String, (Kind, bool)>,
    primary_key: Vec<String>,
    /// The columns of each unique constraint.
    unique: BTreeSet<Vec<String>>,
    /// Index (made by `CREATE INDEX`) → (unique, partial, its columns; `<expr>` for an
    /// expression).
    indexes: BTreeMap<String, (bool, bool, Vec<String>)>,
}

/// What a column holds, in the engine-neutral terms the store reads it in. SQLite has no
/// boolean: a flag is the integer 0 or 1 there whatever its column was declared, so a
/// PostgreSQL `boolean` counts as an integer too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Integer,
    Real,
    Text,
    Bytes,
    Other,
}

impl Kind {
    fn of(declared: &str) -> Kind {
        let t = declared.to_ascii_lowercase();
        if t.contains("int") || t.contains("bool") || t == "bigserial" || t == "serial" {
            Kind::Integer
        } else if t.contains("char") || t.contains("text") || t.contains("clob") {
            Kind::Text
        } else if t.contains("blob") || t == "bytea" {
            Kind::Bytes
        } else if t.contains("real") || t.contains("double") || t.contains("float") {
            Kind::Real
        } else {
            Kind::Other
        }
    }
}

/// Tables of the schema, the migrations' own bookkeeping left out.
type Schema = BTreeMap<String, Table>;

async fn sqlite_schema(url: &str) -> Schema {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut schema = Schema::new();
    for name in tables {
        let mut table = Table::default();
        let columns = sqlx::query(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("columns");
        let mut key: Vec<(i64, String)> = Vec::new();
        for column in columns {
            let column_name: String = column.get("name");
            let pk: i64 = column.get("pk");
            let not_null = column.get::<i64, _>("notnull") != 0 || pk > 0;
            let kind = Kind::of(&column.get::<String, _>("type"));
            table.columns.insert(column_name.clone(), (kind, not_null));
            if pk > 0 {
                key.push((pk, column_name));
            }
        }
        key.sort();
        table.primary_key = key.into_iter().map(|(_, c)| c).collect();
        let indexes = sqlx::query(
            "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY name",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("indexes");
        for index in indexes {
            let index_name: String = index.get("name");
            let origin: String = index.get("origin");
            let columns: Vec<Option<String>> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .bind(&index_name)
                    .fetch_all(&mut conn)
                    .await
                    .expect("index columns");
            let columns: Vec<String> = columns
                .into_iter()
                .map(|c| c.unwrap_or_else(|| "<expr>".into()))
                .collect();
            match origin.as_str() {
                "pk" => {}
                "u" => {
                    table.unique.insert(columns);
                }
                _ => {
                    let unique = index.get::<i64, _>("unique") != 0;
                    let partial = index.get::<i64, _>("partial") != 0;
                    table.indexes.insert(index_name, (unique, partial, columns));
                }
            }
        }
        schema.insert(name, table);
    }
    schema
}

async fn postgres_schema(url: &str) -> Schema {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name NOT LIKE '\\_sqlx%' ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut schema = Schema::new();
    for name in tables {
        let mut table = Table::default();
        let columns = sqlx::query(
            "SELECT column_name::text AS name, data_type::text AS type, \
             is_nullable::text = 'NO' AS not_null \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("columns");
        for column in columns {
            let kind = Kind::of(&column.get::<String, _>("type"));
            table
                .columns
                .insert(column.get("name"), (kind, column.get("not_null")));
        }
        // Every index of the table with its columns, and the constraint it backs, if any.
        let indexes = sqlx::query(
            "SELECT i.relname::text AS name, ix.indisunique AS is_unique, \
             ix.indpred IS NOT NULL AS partial, \
             (SELECT c.contype::text FROM pg_constraint c WHERE c.conindid = ix.indexrelid \
              AND c.conrelid = ix.indrelid) AS constraint_kind, \
             ARRAY(SELECT CASE WHEN ix.indkey[k - 1] = 0 THEN '<expr>' \
                   ELSE pg_get_indexdef(ix.indexrelid, k, true) END \
                   FROM generate_series(1, ix.indnkeyatts) AS k ORDER BY k) AS columns \
             FROM pg_index ix \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_class t ON t.oid = ix.indrelid \
             WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace",
        )
        .bind(&name)
        .fetch_all(&mut conn)
        .await
        .expect("indexes");
        for index in indexes {
            let columns: Vec<String> = index.get("columns");
            match index.get::<Option<String>, _>("constraint_kind").as_deref() {
                Some("p") => table.primary_key = columns,
                Some("u") => {
                    table.unique.insert(columns);
                }
                _ => {
                    table.indexes.insert(
                        index.get("name"),
                        (index.get("is_unique"), index.get("partial"), columns),
                    );
                }
            }
        }
        schema.insert(name, table);
    }
    schema
}

/// What differs between the two, one line each (empty when they agree).
fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut said = Vec::new();
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in names {
        match (sqlite.get(name), postgres.get(name)) {
            (Some(s), Some(p)) if s == p => {}
            (Some(s), Some(p)) => {
                let columns: BTreeSet<&String> = s.columns.keys().chain(p.columns.keys()).collect();
                for column in columns {
                    let (a, b) = (s.columns.get(column), p.columns.get(column));
                    if a != b {
                        said.push(format!("{name}.{column}: SQLite {a:?}, PostgreSQL {b:?}"));
                    }
                }
                if s.primary_key != p.primary_key {
                    said.push(format!(
                        "{name} primary key: SQLite {:?}, PostgreSQL {:?}",
                        s.primary_key, p.primary_key
                    ));
                }
                if s.unique != p.unique {
                    said.push(format!(
                        "{name} unique: SQLite {:?}, PostgreSQL {:?}",
                        s.unique, p.unique
                    ));
                }
                let indexes: BTreeSet<&String> = s.indexes.keys().chain(p.indexes.keys()).collect();
                for index in indexes {
                    let (a, b) = (s.indexes.get(index), p.indexes.get(index));
                    if a != b {
                        said.push(format!(
                            "index {index} on {name}: SQLite {a:?}, PostgreSQL {b:?}"
                        ));
                    }
                }
            }
            (s, p) => said.push(format!(
                "table {name}: in SQLite {}, in PostgreSQL {}",
                s.is_some(),
                p.is_some()
            )),
        }
    }
    said
}

#[tokio::test]
async fn both_engines_migrate_to_one_schema() {
    let sqlite = TestDb::new(Backend::Sqlite).await;
    let postgres = TestDb::new(Backend::Postgres).await;
    for db in [&sqlite, &postgres] {
        renkei::store::open(&db.url).await.expect("migrate");
    }
    let (s, p) = (
        sqlite_schema(&sqlite.url).await,
        postgres_schema(&postgres.url).await,
    );
    assert!(s.len() > 20, "the tables were read: {:?}", s.keys());
    for (what, read) in [
        (
            "primary keys",
            s.values().filter(|t| !t.primary_key.is_empty()).count(),
        ),
        (
            "unique constraints",
            s.values().filter(|t| !t.unique.is_empty()).count(),
        ),
        (
            "indexes",
            s.values().filter(|t| !t.indexes.is_empty()).count(),
        ),
        (
            "partial indexes",
            s.values()
                .flat_map(|t| t.indexes.values())
                .filter(|i| i.1)
                .count(),
        ),
    ] {
        assert!(read > 0, "no {what} were read");
    }
    let said = differences(&s, &p);
    assert!(said.is_empty(), "the schemas differ:\n{}", said.join("\n"));
}

#[test]
fn a_difference_is_told() {
    let mut s = Schema::new();
    let mut table = Table::default();
    table.columns.insert("id".into(), (Kind::Integer, true));
    table.primary_key = vec!["id".into()];
    s.insert("events".into(), table);
    let mut p = Schema::new();
    let mut table = Table::default();
    table.columns.insert("id".into(), (Kind::Integer, false));
    table.primary_key = vec!["id".into()];
    table
        .indexes
        .insert("events_at".into(), (false, false, vec!["at".into()]));
    p.insert("events".into(), table);
    p.insert("extra".into(), Table::default());
    let said = differences(&s, &p);
    assert_eq!(said.len(), 3, "{said:?}");
    assert!(said[0].starts_with("events.id"), "{said:?}");
    assert!(said[1].starts_with("index events_at"), "{said:?}");
    assert!(said[2].starts_with("table extra"), "{said:?}");
}
