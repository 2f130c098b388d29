//! Per-patient export (art. 13(16)): an entitled admin takes a group's whole timeline out
//! of the system for continuity of care and the care record — posts with their authors and
//! times, 確認しました confirmations, deletions as tombstones, membership changes, the files
//! posted (name, type, size; the files themselves stay behind their download check) — as
//! JSON and as one self-contained HTML document (no script, no external resource, printable
//! to PDF from any browser). The export is an audited endpoint like every other.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use renkei_domain::policy::Action;
use renkei_protocol::api::{ConsentSigner, GroupExport};
use renkei_protocol::{EventData, Millis, UserProfile};

use crate::app::App;
use crate::http::{HttpError, Id};
use crate::session::Caller;
use crate::{group, wire};
use renkei_domain::clock;

/// Events read from the store per page while exporting.
const PAGE: u32 = 1000;

/// What `GET …/export` takes.
#[derive(Debug, serde::Deserialize)]
pub struct ExportQuery {
    /// `json` (the default) or `html`.
    format: Option<String>,
}

/// `GET /api/v1/groups/{id}/export?format=json|html`.
pub async fn export(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let html = match query.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "format {other:?}: use json or html"
            )))
        }
    };
    let (details, facts) = group::target(&app, &caller, id).await?;
    caller.may(Action::ExportGroup(facts))?;
    let last = details.group.last_seq;
    let mut events = Vec::new();
    let mut after = 0;
    while after < last {
        let page = app.store.events_after(id, after, last, PAGE).await?;
        let Some(end) = page.last() else { break };
        after = end.seq;
        events.extend(page.iter().map(wire::event));
    }
    let export = GroupExport {
        exported_at: clock::now_ms(),
        exported_by: wire::profile(&caller.user),
        group: group::view(details),
        events,
    };
    tracing::info!(group = id, by = caller.user.id, "group exported");
    let name = format!("renkei-group-{id}");
    if !html {
        let disposition = format!("attachment; filename=\"{name}.json\"");
        return Ok((
            [
                (header::CONTENT_DISPOSITION, disposition),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            Json(export),
        )
            .into_response());
    }
    let disposition = format!("attachment; filename=\"{name}.html\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        document(&export),
    )
        .into_response())
}

/// Text made safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Japan Standard Time (no daylight saving), as the care record is kept.
fn jst(at: Millis) -> String {
    let offset = time::UtcOffset::from_hms(9, 0, 0).unwrap_or(time::UtcOffset::UTC);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| at.to_string())
}

fn person(user: &UserProfile) -> String {
    let facility = user
        .facility
        .as_ref()
        .map_or(String::new(), |f| format!("（{}）", f.name));
    escape(&format!("{}{facility}", user.name))
}

/// One line for what happened at an event.
fn line(data: &EventData) -> String {
    match data {
        EventData::Post {
            author, text, file, ..
        } => {
            let attached = file.as_ref().map_or(String::new(), |file| {
                format!(
                    "<p class=\"file\">添付 / file: {} ({}, {} bytes, #{})</p>",
                    escape(&file.name),
                    escape(&file.media_type),
                    file.size,
                    file.id
                )
            });
            format!(
                "<strong>{}</strong> <span class=\"role\">{}</span><p class=\"text\">{}</p>{attached}",
                person(author),
                escape(&author.profession),
                escape(text)
            )
        }
        EventData::DeletedPost {
            author,
            deleted_by,
            deleted_at,
        } => format!(
            "<strong>{}</strong><p class=\"deleted\">削除された投稿（{} が {} に削除）/ deleted post</p>",
            person(author),
            person(deleted_by),
            jst(*deleted_at)
        ),
        EventData::PostConfirmed { seq, by } => {
            format!("{} が #{seq} を確認しました / confirmed #{seq}", person(by))
        }
        EventData::PostDeleted { seq, by } => {
            format!("{} が #{seq} を削除 / deleted #{seq}", person(by))
        }
        EventData::MemberJoined { member, by } => match by {
            Some(by) => format!("{} が参加（招待: {}）/ joined", person(member), person(by)),
            None => format!("{} が参加 / joined", person(member)),
        },
        EventData::MemberLeft { member } => format!("{} が退出 / left", person(member)),
        EventData::MemberRemoved { member, by } => format!(
            "{} を解除（{}）/ removed",
            person(member),
            person(by)
        ),
        EventData::GroupRenamed { name, by } => format!(
            "グループ名を「{}」に変更（{}）/ renamed",
            escape(name),
            person(by)
        ),
        EventData::ConsentRecorded { by } => {
            format!("同意書（様式3）を登録（{}）/ consent on file", person(by))
        }
        EventData::GroupArchived { by } => match by {
            Some(by) => format!("保管庫へ移動（{}）/ archived", person(by)),
            None => "保管庫へ移動（自動）/ archived by the archive process".to_string(),
        },
        EventData::ArchiveNotice { archive_after } => format!(
            "{} に保管庫へ移動予定 / archive notice",
            jst(*archive_after)
        ),
        EventData::GroupRestored { by } => {
            format!("保管庫から復元（{}）/ restored", person(by))
        }
    }
}

/// The export as one HTML document: inline style only, nothing to run or fetch.
fn document(export: &GroupExport) -> String {
    let group = &export.group;
    let title = match &group.patient {
        Some(patient) => format!("{} 様", patient.name),
        None => group.summary.name.clone(),
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <title>{title} — Renkei</title><style>\
         body{{font-family:sans-serif;margin:2em;color:#111}}\
         table{{border-collapse:collapse;width:100%}}\
         td,th{{border-bottom:1px solid #ccc;padding:.4em;text-align:left;vertical-align:top}}\
         .text{{white-space:pre-wrap;margin:.2em 0}}.deleted{{color:#777;margin:.2em 0}}\
         .role{{color:#555;font-size:.9em}}.system{{color:#444}}\
         </style></head><body>\n<h1>{title}</h1>\n<dl>",
        title = escape(&title)
    );
    let mut row = |term: &str, value: String| {
        let _ = write!(html, "<dt>{term}</dt><dd>{value}</dd>");
    };
    row("グループ / Group", escape(&group.summary.name));
    if let Some(patient) = &group.patient {
        row("患者・利用者 / Patient", escape(&patient.name));
        row("ふりがな / Kana", escape(&patient.kana));
        row("生年月日 / Birth date", escape(&patient.birth_date));
    }
    if let Some(owner) = &group.owner {
        row("連携元事業所 / Owning facility", escape(&owner.name));
    }
    if let Some(consent) = &group.consent {
        let signer = match consent.signed_by {
            ConsentSigner::Patient => "本人 / patient",
            ConsentSigner::Family => "家族 / family",
            ConsentSigner::PatientAndFamily => "本人・家族 / patient and family",
        };
        row(
            "同意書（様式3）/ Consent",
            format!("{} {}", escape(&consent.signed_on), signer),
        );
    }
    row(
        "出力 / Exported",
        format!(
            "{} {}",
            jst(export.exported_at),
            person(&export.exported_by)
        ),
    );
    html.push_str("</dl>\n<h2>メンバー / Members</h2>\n<ul>");
    for member in &group.members {
        let _ = write!(
            html,
            "<li>{} <span class=\"role\">{}</span> — {}</li>",
            person(&member.user),
            escape(&member.user.profession),
            jst(member.joined_at)
        );
    }
    html.push_str(
        "</ul>\n<h2>記録 / Timeline</h2>\n<table><thead><tr><th>#</th>\
         <th>日時 / Time (JST)</th><th></th></tr></thead><tbody>\n",
    );
    for event in &export.events {
        let class = match event.data {
            EventData::Post { .. } | EventData::DeletedPost { .. } => "post",
            _ => "system",
        };
        let _ = writeln!(
            html,
            "<tr class=\"{class}\" id=\"e{seq}\"><td>{seq}</td><td>{at}</td><td>{line}</td></tr>",
            seq = event.seq,
            at = jst(event.at),
            line = line(&event.data)
        );
    }
    html.push_str("</tbody></table>\n</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::{escape, jst};

    #[test]
    fn markup_in_text_stays_text() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn times_are_japan_standard_time() {
        // 2026-11-24T00:00:00Z is 09:00 in Japan.
        assert_eq!(jst(1_795_478_400_000), "2026-11-24 09:00:00");
    }
}
