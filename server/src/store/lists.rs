//! How a statement takes a batch's list of values, per engine.
//!
//! On PostgreSQL a list is one array parameter (`= ANY($1)`, `UNNEST($1, $2)`), so a
//! statement's text is the same whatever the batch's length: each connection prepares it
//! once. A list spelled out (`IN ($1, …, $n)`, `VALUES (…), …`) is a new statement for
//! every length, and sqlx then spends a round trip preparing it and often another closing
//! the statement it evicts from its cache — round trips the commit of posts made while it
//! held its groups' row locks, which the other nodes' commits waited for. SQLite runs in
//! the process, where a round trip costs nothing, and has no arrays: it spells lists out.

use renkei_protocol::Seq;
use sqlx::QueryBuilder;

use super::NewPost;

/// An engine's spelling of lists. Each method pushes the list where the statement has
/// left room for it, as its comment says.
pub(super) trait Lists: sqlx::Database {
    /// After `… WHERE column`: the column is one of `ids`.
    fn push_in(query: &mut QueryBuilder<'_, Self>, ids: Vec<i64>);

    /// Inside `WITH name (a, b) AS (…)`: the rows of (BIGINT, TEXT).
    fn push_id_text_rows(query: &mut QueryBuilder<'_, Self>, rows: Vec<(i64, String)>);

    /// Inside `WITH name (a, b) AS (…)`: the rows of (BIGINT, BIGINT).
    fn push_id_id_rows(query: &mut QueryBuilder<'_, Self>, rows: Vec<(i64, i64)>);

    /// After `INSERT INTO events (group_id, seq, kind, author_id, client_id, text,
    /// content_hash, search_text, file_id, created_at) `: each post at its sequence number.
    fn push_posts<'a>(query: &mut QueryBuilder<'a, Self>, rows: &[(&'a NewPost, Seq)]);
}

impl Lists for sqlx::Postgres {
    fn push_in(query: &mut QueryBuilder<'_, Self>, ids: Vec<i64>) {
        query.push(" = ANY(").push_bind(ids).push(")");
    }

    fn push_id_text_rows(query: &mut QueryBuilder<'_, Self>, rows: Vec<(i64, String)>) {
        let (ids, texts): (Vec<i64>, Vec<String>) = rows.into_iter().unzip();
        query
            .push("SELECT * FROM UNNEST(CAST(")
            .push_bind(ids)
            .push(" AS BIGINT[]), CAST(")
            .push_bind(texts)
            .push(" AS TEXT[]))");
    }

    fn push_id_id_rows(query: &mut QueryBuilder<'_, Self>, rows: Vec<(i64, i64)>) {
        let (first, second): (Vec<i64>, Vec<i64>) = rows.into_iter().unzip();
        query
            .push("SELECT * FROM UNNEST(CAST(")
            .push_bind(first)
            .push(" AS BIGINT[]), CAST(")
            .push_bind(second)
            .push(" AS BIGINT[]))");
    }

    fn push_posts<'a>(query: &mut QueryBuilder<'a, Self>, rows: &[(&'a NewPost, Seq)]) {
        let groups: Vec<i64> = rows.iter().map(|(p, _)| p.group).collect();
        let seqs: Vec<i64> = rows.iter().map(|&(_, seq)| seq).collect();
        let authors: Vec<i64> = rows.iter().map(|(p, _)| p.author.id).collect();
        let client_ids: Vec<&str> = rows.iter().map(|(p, _)| p.client_id.as_str()).collect();
        let texts: Vec<&str> = rows.iter().map(|(p, _)| p.text.as_str()).collect();
        let hashes: Vec<&[u8]> = rows
            .iter()
            .map(|(p, _)| p.content_hash.as_slice())
            .collect();
        let folded: Vec<Option<&str>> =
            rows.iter().map(|(p, _)| p.search_text.as_deref()).collect();
        let files: Vec<Option<i64>> = rows
            .iter()
            .map(|(p, _)| p.file.as_ref().map(|f| f.id))
            .collect();
        let at: Vec<i64> = rows.iter().map(|(p, _)| p.at).collect();
        query
            .push("SELECT g, s, 'post', a, c, t, h, f, fi, at FROM UNNEST(CAST(")
            .push_bind(groups)
            .push(" AS BIGINT[]), CAST(")
            .push_bind(seqs)
            .push(" AS BIGINT[]), CAST(")
            .push_bind(authors)
            .push(" AS BIGINT[]), CAST(")
            .push_bind(client_ids)
            .push(" AS TEXT[]), CAST(")
            .push_bind(texts)
            .push(" AS TEXT[]), CAST(")
            .push_bind(hashes)
            .push(" AS BYTEA[]), CAST(")
            .push_bind(folded)
            .push(" AS TEXT[]), CAST(")
            .push_bind(files)
            .push(" AS BIGINT[]), CAST(")
            .push_bind(at)
            .push(" AS BIGINT[])) AS p (g, s, a, c, t, h, f, fi, at)");
    }
}

impl Lists for sqlx::Sqlite {
    fn push_in(query: &mut QueryBuilder<'_, Self>, ids: Vec<i64>) {
        query.push(" IN (");
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        query.push(")");
    }

    fn push_id_text_rows(query: &mut QueryBuilder<'_, Self>, rows: Vec<(i64, String)>) {
        query.push_values(rows, |mut row, (id, text)| {
            row.push_bind(id).push_bind(text);
        });
    }

    fn push_id_id_rows(query: &mut QueryBuilder<'_, Self>, rows: Vec<(i64, i64)>) {
        query.push_values(rows, |mut row, (first, second)| {
            row.push_bind(first).push_bind(second);
        });
    }

    fn push_posts<'a>(query: &mut QueryBuilder<'a, Self>, rows: &[(&'a NewPost, Seq)]) {
        query.push_values(rows, |mut row, &(post, seq)| {
            row.push_bind(post.group)
                .push_bind(seq)
                .push_bind("post")
                .push_bind(post.author.id)
                .push_bind(&post.client_id)
                .push_bind(&post.text)
                .push_bind(&post.content_hash)
                .push_bind(&post.search_text)
                .push_bind(post.file.as_ref().map(|f| f.id))
                .push_bind(post.at);
        });
    }
}
