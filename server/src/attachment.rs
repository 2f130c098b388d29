//! Files and images in a group (添付ファイル): a member uploads a file into the group, then
//! posts it (the post's `file`), so that it goes through the post's confirm step, commit,
//! fan-out, catch-up, deletion and export like any post.
//!
//! - The type is recognised from the content's first bytes, never from the name or the
//!   declared type; only the types in `RENKEI_FILE_TYPES` are taken, up to
//!   `RENKEI_MAX_FILE_BYTES`. Images must decode: each gets a small JPEG thumbnail.
//! - An upload is never held whole in memory: its body streams into a temporary file in
//!   `<data dir>/incoming` (hashed and counted on the way, refused as soon as it is too
//!   large or of a type not taken), which moves into the file store and is removed on
//!   every other path — an error, a refusal, a client that goes away. Images are decoded
//!   from that file within explicit limits (`RENKEI_IMAGE_MAX_EDGE` pixels each way,
//!   `RENKEI_IMAGE_MAX_DECODE_MIB` of decoded pixels), checked against the image's header
//!   before anything is allocated, so a small file declaring a huge image (a
//!   decompression bomb) costs nothing; a few decode at once (`RENKEI_IMAGE_WORKERS`).
//!   Uploads in progress are bounded per node and per person (`RENKEI_UPLOADS_AT_ONCE`,
//!   `RENKEI_UPLOADS_PER_USER`): 429 beyond.
//! - The bytes live in the file store — `<data dir>/files/<group>/<id>` by default, or an
//!   S3-compatible object store (`RENKEI_FILE_STORE_URL`) — and the record in the
//!   database. Every download checks that the caller may read the group now, and is on the
//!   audit trail (every endpoint is).
//! - Nothing is served so that it could run: a file goes out with its recognised type,
//!   `nosniff`, a sandboxing CSP, and as an attachment unless it is a raster image asked for
//!   inline.
//! - Deleting the post erases the file: its record is marked in the deletion's commit and
//!   its bytes leave the store right after. An upload no post took within a day is erased
//!   by the archive process.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use renkei_domain::policy::Action;
use renkei_domain::upload::{Kind, ABANDONED_AFTER_MS};
use renkei_protocol::{FileRef, GroupId};

use crate::app::App;
use crate::files::{store_upload, AttachError, Incoming, Upload};
use crate::group;
use crate::http::{HttpError, Id};
use crate::session::Caller;
use renkei_domain::clock;

/// Erases the uploads no post took within [`ABANDONED_AFTER_MS`] (the archive process
/// runs it, once across the nodes); returns how many.
pub async fn erase_abandoned(app: &App) -> Result<usize, crate::store::StoreError> {
    let now = clock::now_ms();
    let abandoned = app
        .store
        .abandon_uploads(now - ABANDONED_AFTER_MS, now)
        .await?;
    for (group, id) in &abandoned {
        app.files.remove(*group, *id).await;
    }
    Ok(abandoned.len())
}

/// What an upload takes.
#[derive(Debug, serde::Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

/// `POST /api/v1/groups/{id}/files?name=`: the file's bytes as the body.
pub async fn upload(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(group_id): Id,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<FileRef>), HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    // Held until the upload is stored or fails, or the client goes away. Taken first, so
    // that an upload beyond the bounds is shed before it costs a lookup (a 429 says nothing
    // of the group: it counts only the caller's and the node's uploads in progress).
    let _admitted = app.uploads.admit(caller.user.id)?;
    let (_, facts) = group::target(&app, &caller, group_id).await?;
    caller.may(Action::PostToGroup(facts))?;
    let max = app.config.max_file_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(AttachError::TooLarge(max).into());
    }
    let (incoming, kind) =
        Incoming::receive(&app.uploads.incoming, body, max, &app.config.file_types).await?;
    let upload = Upload {
        group: group_id,
        uploader: caller.user.id,
        name: query.name.as_deref(),
        kind,
        at: clock::now_ms(),
    };
    let stored = store_upload(
        app.store.as_ref(),
        &app.files,
        &app.uploads.decoding,
        upload,
        incoming,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// What a download takes.
#[derive(Debug, serde::Deserialize)]
pub struct DownloadQuery {
    /// Show an image in the browser instead of saving it.
    #[serde(default)]
    inline: bool,
}

/// `GET /api/v1/files/{id}`: the file, to a member who may read its group now (its
/// uploader, before it is posted).
pub async fn download(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    query: Result<Query<DownloadQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(e) => return HttpError::bad_request(e.body_text()).into_response(),
    };
    let mut group = None;
    let served = serve(&app, &caller, id, false, query.inline, &mut group).await;
    on_record_with(served, group)
}

/// `GET /api/v1/files/{id}/thumbnail`: an image's small JPEG preview.
pub async fn thumbnail_of(State(app): State<Arc<App>>, caller: Caller, Id(id): Id) -> Response {
    let mut group = None;
    let served = serve(&app, &caller, id, true, true, &mut group).await;
    on_record_with(served, group)
}

/// The response, naming the file's group for its audit record (the path names only the
/// file): the owning facility's admins then see who read their patient's file, and who
/// tried to.
fn on_record_with(served: Result<Response, HttpError>, group: Option<GroupId>) -> Response {
    let mut response = served.into_response();
    if let Some(group) = group {
        response
            .extensions_mut()
            .insert(crate::http::AuditReads::group(group));
    }
    response
}

/// Serves a file or its thumbnail; `group` is set to the file's group once it is known.
async fn serve(
    app: &App,
    caller: &Caller,
    id: i64,
    thumbnail: bool,
    inline: bool,
    group: &mut Option<GroupId>,
) -> Result<Response, HttpError> {
    let file = app.store.file(id).await?.ok_or(AttachError::NotFound)?;
    *group = Some(file.group_id);
    let (_, facts) = group::target(app, caller, file.group_id).await?;
    // Read as the group is read: members now, or through the archive view.
    caller
        .may(Action::ReadGroup(facts))
        .or_else(|_| caller.may(Action::ViewArchive(facts)))?;
    let unposted_of_another = file.seq.is_none() && file.uploader_id != caller.user.id;
    if file.deleted_at.is_some() || unposted_of_another || (thumbnail && !file.has_thumbnail) {
        return Err(AttachError::NotFound.into());
    }
    let (size, bytes) = app
        .files
        .get(file.group_id, file.id, thumbnail)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => AttachError::NotFound,
            _ => AttachError::Io(err),
        })?;
    let kind = Kind::of_media_type(&file.media_type);
    let media_type = if thumbnail {
        "image/jpeg"
    } else {
        kind.map_or("application/octet-stream", Kind::media_type)
    };
    let shown = inline && kind.is_some_and(Kind::is_image);
    let encoded =
        percent_encoding::utf8_percent_encode(&file.name, percent_encoding::NON_ALPHANUMERIC);
    let disposition = format!(
        "{}; filename*=UTF-8''{encoded}",
        if shown { "inline" } else { "attachment" }
    );
    Ok((
        [
            (header::CONTENT_TYPE, media_type.to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
            // Whatever it holds, it runs nothing and loads nothing.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
