//! Files and images in a group (添付ファイル): a member uploads a file into the group, then
//! posts it (the post's `file`), so that it goes through the post's confirm step, commit,
//! fan-out, catch-up, deletion and export like any post.
//!
//! - The type is recognised from the content's first bytes, never from the name or the
//!   declared type; only the types in `RENKEI_FILE_TYPES` are taken, up to
//!   `RENKEI_MAX_FILE_BYTES`. Images must decode: each gets a small JPEG thumbnail.
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use renkei_protocol::{ErrorCode, FileRef, GroupId, Millis, UserId};
use sha2::{Digest, Sha256};

use crate::api::{Caller, Id};
use crate::app::App;
use crate::http::HttpError;
use crate::policy::Action;
use crate::store::{NewFile, Store, StoredFile};
use crate::{clock, group};

/// The longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;
/// A thumbnail fits in this many pixels each way.
const THUMBNAIL_EDGE: u32 = 320;
/// Images larger than this many pixels each way are refused (a "decompression bomb").
const MAX_IMAGE_EDGE: u32 = 12_000;
/// An upload is posted within this time (milliseconds), or uploaded again.
pub const POST_WITHIN_MS: i64 = 12 * 3_600_000;
/// Uploads no post took are erased after this time (twice the above, so that the clean-up
/// never races a post taking one).
pub const ABANDONED_AFTER_MS: i64 = 2 * POST_WITHIN_MS;

/// The kinds of file Renkei recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Gif,
    Webp,
    Pdf,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Jpeg, Kind::Png, Kind::Gif, Kind::Webp, Kind::Pdf];

    /// Its name in `RENKEI_FILE_TYPES`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpeg",
            Kind::Png => "png",
            Kind::Gif => "gif",
            Kind::Webp => "webp",
            Kind::Pdf => "pdf",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::Gif => "image/gif",
            Kind::Webp => "image/webp",
            Kind::Pdf => "application/pdf",
        }
    }

    /// A raster image: shown inline, with a thumbnail.
    pub fn is_image(self) -> bool {
        self != Kind::Pdf
    }

    fn of_media_type(media_type: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.media_type() == media_type)
    }
}

/// The kind of a file, recognised by its first bytes.
pub fn detect(bytes: &[u8]) -> Option<Kind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Kind::Png)
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some(Kind::Jpeg)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(Kind::Gif)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Kind::Webp)
    } else if bytes.starts_with(b"%PDF-") {
        Some(Kind::Pdf)
    } else {
        None
    }
}

/// What can go wrong with a file.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no such file of yours to attach: upload it into this group first")]
    NotAttachable,
    #[error("no such file")]
    NotFound,
    #[error("a file has at most {0} bytes")]
    TooLarge(u64),
    #[error("files of this type are not accepted (accepted: {0})")]
    Unsupported(String),
    #[error("the image cannot be read")]
    BadImage,
    #[error("the file store failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl AttachError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AttachError::NotAttachable | AttachError::NotFound => ErrorCode::NotFound,
            AttachError::TooLarge(_) => ErrorCode::TooLarge,
            AttachError::Unsupported(_) | AttachError::BadImage => ErrorCode::UnsupportedMediaType,
            AttachError::Io(_) | AttachError::Store(_) => ErrorCode::Unavailable,
        }
    }

    /// What a client is told: no internal detail of the store or the database.
    pub fn public_message(&self) -> String {
        match self {
            AttachError::Io(_) | AttachError::Store(_) => {
                "the file store or the database is unavailable: retry".to_string()
            }
            other => other.to_string(),
        }
    }
}

impl From<AttachError> for HttpError {
    fn from(err: AttachError) -> Self {
        let status = match err {
            AttachError::Store(store) => return store.into(),
            AttachError::NotAttachable | AttachError::NotFound => StatusCode::NOT_FOUND,
            AttachError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AttachError::Unsupported(_) | AttachError::BadImage => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            AttachError::Io(ref io) => {
                tracing::error!(error = %io, "file store failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        HttpError::new(status, err.code(), err.public_message())
    }
}

/// Where the bytes of files live, one interface with two backends.
#[derive(Clone)]
pub enum FileStore {
    /// A directory of the local filesystem, `<data dir>/files` (the default; several nodes
    /// must all mount it).
    Local(PathBuf),
    /// An S3-compatible object store (`RENKEI_FILE_STORE_URL=s3://bucket/prefix`), which
    /// every node reaches.
    S3 {
        store: Arc<dyn object_store::ObjectStore>,
        prefix: String,
    },
}

impl FileStore {
    /// The store the settings name.
    pub fn open(config: &crate::config::Config) -> Result<FileStore, String> {
        let Some(url) = config.file_store_url.as_deref() else {
            return Ok(FileStore::Local(config.data_dir.join("files")));
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or("RENKEI_FILE_STORE_URL: use s3://bucket/prefix")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("RENKEI_FILE_STORE_URL: name the bucket (s3://bucket/prefix)".into());
        }
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&config.s3_region);
        if let (Some(key), Some(secret)) = (&config.s3_access_key_id, &config.s3_secret_access_key)
        {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        if let Some(endpoint) = &config.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| format!("S3 file store: {e}"))?;
        Ok(FileStore::S3 {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn name(group: GroupId, id: i64, thumbnail: bool) -> String {
        if thumbnail {
            format!("{group}/{id}.thumb.jpg")
        } else {
            format!("{group}/{id}")
        }
    }

    fn key(prefix: &str, name: &str) -> object_store::path::Path {
        if prefix.is_empty() {
            object_store::path::Path::from(name)
        } else {
            object_store::path::Path::from(format!("{prefix}/{name}"))
        }
    }

    /// Writes a file's bytes (and its thumbnail), each complete or not at all.
    async fn put(
        &self,
        group: GroupId,
        id: i64,
        bytes: &[u8],
        thumbnail: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let parts = [(false, Some(bytes)), (true, thumbnail)];
        for (is_thumbnail, content) in parts {
            let Some(content) = content else { continue };
            let name = Self::name(group, id, is_thumbnail);
            match self {
                FileStore::Local(dir) => {
                    tokio::fs::create_dir_all(dir.join(group.to_string())).await?;
                    write_whole(&dir.join(&name), content).await?;
                }
                FileStore::S3 { store, prefix } => {
                    // An object appears whole when its PUT succeeds.
                    store
                        .put(&Self::key(prefix, &name), content.to_vec().into())
                        .await
                        .map_err(io_error)?;
                }
            }
        }
        Ok(())
    }

    async fn get(&self, group: GroupId, id: i64, thumbnail: bool) -> std::io::Result<Vec<u8>> {
        let name = Self::name(group, id, thumbnail);
        match self {
            FileStore::Local(dir) => tokio::fs::read(dir.join(name)).await,
            FileStore::S3 { store, prefix } => {
                let object = store
                    .get(&Self::key(prefix, &name))
                    .await
                    .map_err(io_error)?;
                Ok(object.bytes().await.map_err(io_error)?.to_vec())
            }
        }
    }

    /// Removes a file's bytes and thumbnail (a deleted post's).
    pub async fn remove(&self, group: GroupId, id: i64) {
        for thumbnail in [false, true] {
            let name = Self::name(group, id, thumbnail);
            let removed = match self {
                FileStore::Local(dir) => tokio::fs::remove_file(dir.join(&name)).await,
                FileStore::S3 { store, prefix } => store
                    .delete(&Self::key(prefix, &name))
                    .await
                    .map_err(io_error),
            };
            match removed {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => tracing::error!(error = %err, file = %name, "file not erased"),
            }
        }
    }

    /// Removes every file of a group (purged for good).
    pub async fn remove_group(&self, group: GroupId) {
        let removed = match self {
            FileStore::Local(dir) => tokio::fs::remove_dir_all(dir.join(group.to_string())).await,
            FileStore::S3 { store, prefix } => {
                use futures::{StreamExt as _, TryStreamExt as _};
                let listed = store
                    .list(Some(&Self::key(prefix, &group.to_string())))
                    .map_ok(|meta| meta.location)
                    .boxed();
                store
                    .delete_stream(listed)
                    .try_collect::<Vec<_>>()
                    .await
                    .map(|_| ())
                    .map_err(io_error)
            }
        };
        match removed {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::error!(error = %err, group, "files of a purged group not erased"),
        }
    }
}

/// An object store's error as an I/O error (a missing object is `NotFound`).
fn io_error(err: object_store::Error) -> std::io::Error {
    match err {
        object_store::Error::NotFound { .. } => {
            std::io::Error::new(std::io::ErrorKind::NotFound, err.to_string())
        }
        other => std::io::Error::other(other.to_string()),
    }
}

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

/// Writes under a temporary name, syncs and renames: a reader finds all of it or nothing.
async fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let partial = path.with_extension("partial");
    let mut file = tokio::fs::File::create(&partial).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    tokio::fs::rename(&partial, path).await
}

/// A JPEG thumbnail of an image, fitting in [`THUMBNAIL_EDGE`] pixels; `BadImage` when it
/// does not decode (or is absurdly large).
fn thumbnail(bytes: &[u8]) -> Result<Vec<u8>, AttachError> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| AttachError::BadImage)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_EDGE);
    limits.max_image_height = Some(MAX_IMAGE_EDGE);
    reader.limits(limits);
    let image = reader.decode().map_err(|_| AttachError::BadImage)?;
    let small = image.thumbnail(THUMBNAIL_EDGE, THUMBNAIL_EDGE).to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&small)
        .map_err(|_| AttachError::BadImage)?;
    Ok(out)
}

/// A file name as kept: trimmed, without control characters or path separators, bounded.
fn clean_name(name: Option<&str>, kind: Kind) -> String {
    let cleaned: String = name
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .take(MAX_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        format!("file.{}", kind.name())
    } else {
        cleaned.to_string()
    }
}

/// The file a post may attach: the author's upload into this group, on no post yet.
pub async fn attachable(
    app: &App,
    id: i64,
    group: GroupId,
    author: UserId,
) -> Result<FileRef, AttachError> {
    match app.store.file(id).await? {
        Some(file)
            if file.group_id == group
                && file.uploader_id == author
                && file.deleted_at.is_none()
                && file.seq.is_none()
                && file.created_at > clock::now_ms() - POST_WITHIN_MS =>
        {
            Ok(file_ref(&file))
        }
        _ => Err(AttachError::NotAttachable),
    }
}

fn file_ref(file: &StoredFile) -> FileRef {
    FileRef {
        id: file.id,
        name: file.name.clone(),
        media_type: file.media_type.clone(),
        size: file.size,
        thumbnail: file.has_thumbnail,
    }
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
    body: Body,
) -> Result<(StatusCode, Json<FileRef>), HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let (_, facts) = group::target(&app, &caller, group_id).await?;
    caller.may(Action::PostToGroup(facts))?;
    let max = app.config.max_file_bytes;
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| AttachError::TooLarge(max))?;
    let accepted = &app.config.file_types;
    let kind = detect(&bytes)
        .filter(|kind| accepted.iter().any(|name| name == kind.name()))
        .ok_or_else(|| AttachError::Unsupported(accepted.join(", ")))?;
    let upload = Upload {
        group: group_id,
        uploader: caller.user.id,
        name: query.name.as_deref(),
        kind,
        at: clock::now_ms(),
    };
    let stored = store_upload(app.store.as_ref(), &app.files, upload, bytes.into()).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// A file to store, its type detected and accepted.
pub struct Upload<'a> {
    pub group: GroupId,
    pub uploader: UserId,
    /// The name it was given; cleaned before it is stored.
    pub name: Option<&'a str>,
    pub kind: Kind,
    pub at: Millis,
}

/// Stores an uploaded file: its thumbnail made (an image's), its record, then its bytes;
/// returns what a post attaches. The upload endpoint and `renkei demo` both take this path.
pub async fn store_upload(
    store: &dyn Store,
    files: &FileStore,
    upload: Upload<'_>,
    bytes: Vec<u8>,
) -> Result<FileRef, AttachError> {
    let kind = upload.kind;
    let (bytes, thumbnail) = if kind.is_image() {
        let made = tokio::task::spawn_blocking(move || thumbnail(&bytes).map(|t| (bytes, t)))
            .await
            .map_err(|_| AttachError::BadImage)??;
        (made.0, Some(made.1))
    } else {
        (bytes, None)
    };
    let record = NewFile {
        group: upload.group,
        uploader: upload.uploader,
        name: clean_name(upload.name, kind),
        media_type: kind.media_type().to_string(),
        size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        content_hash: Sha256::digest(&bytes).to_vec(),
        thumbnail: thumbnail.is_some(),
        at: upload.at,
    };
    let id = store.create_file(&record).await?;
    files
        .put(upload.group, id, &bytes, thumbnail.as_deref())
        .await
        .map_err(AttachError::from)?;
    tracing::info!(
        group = upload.group,
        file = id,
        by = upload.uploader,
        kind = kind.name(),
        "file uploaded"
    );
    let stored = store.file(id).await?.ok_or(AttachError::NotFound)?;
    Ok(file_ref(&stored))
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
) -> Result<Response, HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    serve(&app, &caller, id, false, query.inline).await
}

/// `GET /api/v1/files/{id}/thumbnail`: an image's small JPEG preview.
pub async fn thumbnail_of(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, HttpError> {
    serve(&app, &caller, id, true, true).await
}

async fn serve(
    app: &App,
    caller: &Caller,
    id: i64,
    thumbnail: bool,
    inline: bool,
) -> Result<Response, HttpError> {
    let file = app.store.file(id).await?.ok_or(AttachError::NotFound)?;
    let (_, facts) = group::target(app, caller, file.group_id).await?;
    // Read as the group is read: members now, or through the archive view.
    caller
        .may(Action::ReadGroup(facts))
        .or_else(|_| caller.may(Action::ViewArchive(facts)))?;
    let unposted_of_another = file.seq.is_none() && file.uploader_id != caller.user.id;
    if file.deleted_at.is_some() || unposted_of_another || (thumbnail && !file.has_thumbnail) {
        return Err(AttachError::NotFound.into());
    }
    let bytes = app
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

#[cfg(test)]
mod tests {
    use super::{clean_name, detect, thumbnail, Kind};

    #[test]
    fn kinds_are_recognised_by_content() {
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n...."), Some(Kind::Png));
        assert_eq!(detect(&[0xff, 0xd8, 0xff, 0xe0]), Some(Kind::Jpeg));
        assert_eq!(detect(b"GIF89a..."), Some(Kind::Gif));
        assert_eq!(detect(b"RIFF\0\0\0\0WEBPVP8 "), Some(Kind::Webp));
        assert_eq!(detect(b"%PDF-1.7\n"), Some(Kind::Pdf));
        assert_eq!(detect(b"<svg xmlns='http://www.w3.org/2000/svg'>"), None);
        assert_eq!(detect(b"<!DOCTYPE html><script>"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn names_lose_paths_and_controls() {
        assert_eq!(
            clean_name(Some("../../etc/passwd"), Kind::Pdf),
            "....etcpasswd"
        );
        assert_eq!(
            clean_name(Some(" 傷の写真\n.jpg "), Kind::Jpeg),
            "傷の写真.jpg"
        );
        assert_eq!(clean_name(None, Kind::Png), "file.png");
        assert_eq!(
            clean_name(Some("a".repeat(500).as_str()), Kind::Png).len(),
            200
        );
    }

    #[test]
    fn a_broken_image_has_no_thumbnail() {
        assert!(thumbnail(b"\x89PNG\r\n\x1a\nnot really").is_err());
        let mut png = Vec::new();
        image::RgbImage::new(800, 600)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let small = thumbnail(&png).expect("thumbnail");
        assert_eq!(detect(&small), Some(Kind::Jpeg));
        let decoded = image::load_from_memory(&small).expect("decodes");
        assert_eq!((decoded.width(), decoded.height()), (320, 240));
    }
}
