//! The files of groups (添付ファイル) as they are kept: uploads received into temporary
//! files within their bounds, images decoded within limits for their thumbnails, the file
//! store (a directory or an S3-compatible store) and what a post may attach. The HTTP
//! endpoints are [`crate::attachment`]'s; nothing here takes a request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use futures::StreamExt as _;
use renkei_domain::upload::{detect, Kind, POST_WITHIN_MS};
use renkei_protocol::{ErrorCode, FileRef, GroupId, Millis, UserId};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http::HttpError;
use crate::store::{NewFile, Store, StoredFile};
use renkei_domain::clock;

/// The longest file name kept, in characters.
const MAX_NAME_CHARS: usize = 200;
/// A thumbnail fits in this many pixels each way.
const THUMBNAIL_EDGE: u32 = 320;
/// The first bytes of an upload, enough to recognise its type.
const HEAD_BYTES: usize = 16;
/// Temporary files in `<data dir>/incoming` older than this at startup were left by a
/// node that died mid-upload; they are removed.
const STALE_INCOMING: Duration = Duration::from_secs(3600);
/// An S3 object up to this size is written with one PUT; a larger one in parts of this
/// size, so that no more than two parts are in memory.
const S3_PART_BYTES: usize = 5 * 1024 * 1024;

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
    #[error(
        "the image is too large: at most {} pixels each way and {} MiB once decoded",
        .0.max_edge,
        .0.max_bytes / (1024 * 1024)
    )]
    ImageTooLarge(ImageLimits),
    #[error("the upload ended before its end")]
    Incomplete,
    #[error("at most {0} uploads at once per person: wait for one to finish")]
    TooManyOfYours(u32),
    #[error("the server is receiving too many uploads at once: retry in a moment")]
    TooManyAtOnce,
    #[error("the file store failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl AttachError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AttachError::NotAttachable | AttachError::NotFound => ErrorCode::NotFound,
            AttachError::TooLarge(_) | AttachError::ImageTooLarge(_) => ErrorCode::TooLarge,
            AttachError::Unsupported(_) | AttachError::BadImage => ErrorCode::UnsupportedMediaType,
            AttachError::Incomplete => ErrorCode::BadRequest,
            AttachError::TooManyOfYours(_) => ErrorCode::RateLimited,
            AttachError::TooManyAtOnce => ErrorCode::Overloaded,
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
            AttachError::TooLarge(_) | AttachError::ImageTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            AttachError::Unsupported(_) | AttachError::BadImage => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            AttachError::Incomplete => StatusCode::BAD_REQUEST,
            // `Retry-After: 1` goes with every 429.
            AttachError::TooManyOfYours(_) | AttachError::TooManyAtOnce => {
                StatusCode::TOO_MANY_REQUESTS
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

    /// Moves a received file into the store (and writes its thumbnail), each complete or
    /// not at all.
    pub async fn put(
        &self,
        group: GroupId,
        id: i64,
        incoming: Incoming,
        thumbnail: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let name = Self::name(group, id, false);
        let thumbnail_name = Self::name(group, id, true);
        match self {
            FileStore::Local(dir) => {
                let group_dir = dir.join(group.to_string());
                tokio::fs::create_dir_all(&group_dir).await?;
                persist(incoming.path, dir.join(&name)).await?;
                if let Some(thumbnail) = thumbnail {
                    write_whole(&dir.join(&thumbnail_name), thumbnail).await?;
                }
                // The new names (and the group's directory, when it is new) made durable.
                let dirs = [group_dir, dir.clone()];
                tokio::task::spawn_blocking(move || {
                    dirs.iter()
                        .try_for_each(|dir| std::fs::File::open(dir)?.sync_all())
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
            }
            FileStore::S3 { store, prefix } => {
                put_object(store.as_ref(), &Self::key(prefix, &name), &incoming).await?;
                if let Some(thumbnail) = thumbnail {
                    store
                        .put(
                            &Self::key(prefix, &thumbnail_name),
                            thumbnail.to_vec().into(),
                        )
                        .await
                        .map_err(io_error)?;
                }
            }
        }
        Ok(())
    }

    /// A stored file's length and its bytes as they are read: a download is streamed,
    /// never held whole in memory.
    pub async fn get(
        &self,
        group: GroupId,
        id: i64,
        thumbnail: bool,
    ) -> std::io::Result<(u64, Body)> {
        let name = Self::name(group, id, thumbnail);
        match self {
            FileStore::Local(dir) => {
                let file = tokio::fs::File::open(dir.join(name)).await?;
                let size = file.metadata().await?.len();
                let bytes = tokio_util::io::ReaderStream::new(file);
                Ok((size, Body::from_stream(bytes)))
            }
            FileStore::S3 { store, prefix } => {
                let object = store
                    .get(&Self::key(prefix, &name))
                    .await
                    .map_err(io_error)?;
                let size = object.meta.size;
                Ok((size, Body::from_stream(object.into_stream())))
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

/// Moves a received file to `to`: its bytes synced, then a rename on the same filesystem;
/// a copy under a temporary name, synced and renamed, when the files' directory is mounted
/// from elsewhere. (The caller syncs the directory.)
async fn persist(temp: tempfile::TempPath, to: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&temp)?.sync_all()?;
        if let Err(failed) = temp.persist(&to) {
            let partial = to.with_extension("partial");
            std::fs::copy(&failed.path, &partial)?;
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, &to)?;
            // The temporary file goes with `failed`.
        }
        Ok(())
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Writes a received file as the object `key`: one PUT up to [`S3_PART_BYTES`], else a
/// multipart upload read from the file part by part (an object appears whole when its
/// PUT or its multipart upload's completion succeeds).
async fn put_object(
    store: &dyn object_store::ObjectStore,
    key: &object_store::path::Path,
    incoming: &Incoming,
) -> std::io::Result<()> {
    if incoming.size <= S3_PART_BYTES as u64 {
        let bytes = tokio::fs::read(&incoming.path).await?;
        store.put(key, bytes.into()).await.map_err(io_error)?;
        return Ok(());
    }
    let upload = store.put_multipart(key).await.map_err(io_error)?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, S3_PART_BYTES);
    let mut source = tokio::fs::File::open(&incoming.path).await?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = match source.read(&mut buffer).await {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) => {
                let _ = writer.abort().await;
                return Err(err);
            }
        };
        // One part in flight while the next one fills.
        if let Err(err) = writer.wait_for_capacity(1).await {
            let _ = writer.abort().await;
            return Err(io_error(err));
        }
        writer.write(&buffer[..read]);
    }
    writer.finish().await.map(|_| ()).map_err(io_error)
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

/// How large an image may be to be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Pixels each way.
    pub max_edge: u32,
    /// Bytes of the decoded image.
    pub max_bytes: u64,
}

impl Default for ImageLimits {
    /// The defaults of `RENKEI_IMAGE_MAX_EDGE` and `RENKEI_IMAGE_MAX_DECODE_MIB`.
    fn default() -> Self {
        ImageLimits {
            max_edge: 8192,
            max_bytes: 128 * 1024 * 1024,
        }
    }
}

impl ImageLimits {
    pub fn of(config: &crate::config::Config) -> ImageLimits {
        ImageLimits {
            max_edge: config.image_max_edge,
            max_bytes: u64::from(config.image_max_decode_mib) * 1024 * 1024,
        }
    }
}

/// Decoding images: within limits, a few at once.
#[derive(Clone)]
pub struct Decoding {
    pub limits: ImageLimits,
    /// One permit per image being decoded: each may take `limits.max_bytes`, so this
    /// bounds the memory decoding takes on a node.
    workers: Arc<Semaphore>,
}

impl Decoding {
    pub fn new(limits: ImageLimits, workers: u32) -> Decoding {
        Decoding {
            limits,
            workers: Arc::new(Semaphore::new(workers.max(1) as usize)),
        }
    }
}

impl Default for Decoding {
    fn default() -> Self {
        Decoding::new(ImageLimits::default(), 1)
    }
}

/// A JPEG thumbnail of an image of `kind`, fitting in [`THUMBNAIL_EDGE`] pixels;
/// `ImageTooLarge` when its header declares more than `limits` allow (nothing is decoded),
/// `BadImage` when it does not decode.
fn thumbnail<R: std::io::BufRead + std::io::Seek>(
    source: R,
    kind: Kind,
    limits: ImageLimits,
) -> Result<Vec<u8>, AttachError> {
    let format = match kind {
        Kind::Jpeg => image::ImageFormat::Jpeg,
        Kind::Png => image::ImageFormat::Png,
        Kind::Gif => image::ImageFormat::Gif,
        Kind::Webp => image::ImageFormat::WebP,
        Kind::Pdf => return Err(AttachError::BadImage),
    };
    let mut reader = image::ImageReader::with_format(source, format);
    let mut allowed = image::Limits::default();
    allowed.max_image_width = Some(limits.max_edge);
    allowed.max_image_height = Some(limits.max_edge);
    allowed.max_alloc = Some(limits.max_bytes);
    reader.limits(allowed);
    // `decode` reserves the whole image against `max_alloc` from the header's dimensions
    // before it allocates or reads any pixel.
    let image = reader.decode().map_err(|err| match err {
        image::ImageError::Limits(_) => AttachError::ImageTooLarge(limits),
        _ => AttachError::BadImage,
    })?;
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
    store: &dyn Store,
    id: i64,
    group: GroupId,
    author: UserId,
) -> Result<FileRef, AttachError> {
    match store.file(id).await? {
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

/// The uploads a node is receiving: bounded per node and per person, streamed to
/// temporary files, their images decoded a few at a time.
pub struct Uploads {
    /// Where bodies are written while they arrive: `<data dir>/incoming`.
    pub incoming: PathBuf,
    /// One permit per upload in progress on this node; none left: 429.
    at_once: Arc<Semaphore>,
    /// Uploads in progress per person (only people with at least one), shared with each
    /// upload's [`Admitted`] guard, which gives its place back when dropped. A std mutex:
    /// never held across an await.
    in_progress: Arc<Mutex<HashMap<UserId, u32>>>,
    per_user: u32,
    pub decoding: Decoding,
}

impl Uploads {
    /// The bounds the settings give; removes what a node that died mid-upload left in
    /// `<data dir>/incoming`.
    pub fn new(config: &crate::config::Config) -> Uploads {
        let incoming = config.data_dir.join("incoming");
        remove_stale(&incoming);
        let workers = config.image_workers.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            u32::try_from(cores / 2).unwrap_or(1).max(1)
        });
        Uploads {
            incoming,
            at_once: Arc::new(Semaphore::new(config.uploads_at_once.max(1) as usize)),
            in_progress: Arc::default(),
            per_user: config.uploads_per_user.max(1),
            decoding: Decoding::new(ImageLimits::of(config), workers),
        }
    }

    /// A place for one more upload by `user`, or why not.
    pub fn admit(&self, user: UserId) -> Result<Admitted, AttachError> {
        let mut in_progress = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let theirs = in_progress.entry(user).or_insert(0);
        if *theirs >= self.per_user {
            return Err(AttachError::TooManyOfYours(self.per_user));
        }
        let permit = Arc::clone(&self.at_once)
            .try_acquire_owned()
            .map_err(|_| AttachError::TooManyAtOnce)?;
        *theirs += 1;
        Ok(Admitted {
            _permit: permit,
            user,
            in_progress: Arc::clone(&self.in_progress),
        })
    }
}

/// Removes temporary files older than [`STALE_INCOMING`] (several nodes may share a data
/// directory: a younger one may be another node's upload in progress).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > STALE_INCOMING);
        if stale {
            if let Err(err) = std::fs::remove_file(entry.path()) {
                tracing::warn!(error = %err, "stale upload not removed");
            }
        }
    }
}

/// An upload's place among those in progress; given back when dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    user: UserId,
    in_progress: Arc<Mutex<HashMap<UserId, u32>>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut in_progress = self
            .in_progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = in_progress.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_progress.remove(&self.user);
            }
        }
    }
}

/// A received file, in a temporary file that is removed when this is dropped unless it
/// moved into the file store.
pub struct Incoming {
    path: tempfile::TempPath,
    size: u64,
    /// SHA-256 of the content.
    hash: Vec<u8>,
}

impl Incoming {
    /// Streams `body` into a temporary file in `dir`, hashing and counting it on the way,
    /// and recognises its type from its first bytes: refused as soon as it is larger than
    /// `max` or of a type not `accepted`.
    pub async fn receive(
        dir: &Path,
        body: Body,
        max: u64,
        accepted: &[String],
    ) -> Result<(Incoming, Kind), AttachError> {
        let (file, path) = temporary_file(dir).await?;
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head = Vec::with_capacity(HEAD_BYTES);
        let mut kind = None;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            // An error here is the client going away or breaking off its body.
            let chunk = chunk.map_err(|_| AttachError::Incomplete)?;
            size = size.saturating_add(chunk.len() as u64);
            if size > max {
                return Err(AttachError::TooLarge(max));
            }
            if kind.is_none() {
                let wanted = (HEAD_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..wanted]);
                if head.len() == HEAD_BYTES {
                    kind = Some(accepted_kind(&head, accepted)?);
                }
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        let kind = match kind {
            Some(kind) => kind,
            None => accepted_kind(&head, accepted)?,
        };
        // Not synced here: most refused uploads are refused after this (an image that does
        // not decode), and a sync per refusal competes with the commits' own. What is kept
        // is synced where it is kept ([`persist`]).
        file.flush().await?;
        let incoming = Incoming {
            path,
            size,
            hash: hasher.finalize().to_vec(),
        };
        Ok((incoming, kind))
    }

    /// `bytes` as a received file, in the system's temporary directory (`renkei demo`).
    pub async fn from_bytes(bytes: &[u8]) -> Result<Incoming, AttachError> {
        let (file, path) = temporary_file(&std::env::temp_dir()).await?;
        let mut file = tokio::fs::File::from_std(file);
        file.write_all(bytes).await?;
        file.flush().await?;
        Ok(Incoming {
            path,
            size: bytes.len() as u64,
            hash: Sha256::digest(bytes).to_vec(),
        })
    }
}

/// A new temporary file in `dir` (created if need be), readable by this user only.
async fn temporary_file(dir: &Path) -> std::io::Result<(std::fs::File, tempfile::TempPath)> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let named = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&dir)?;
        Ok(named.into_parts())
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// The kind of a file by its first bytes, if it is among the `accepted` ones.
fn accepted_kind(head: &[u8], accepted: &[String]) -> Result<Kind, AttachError> {
    detect(head)
        .filter(|kind| accepted.iter().any(|name| name == kind.name()))
        .ok_or_else(|| AttachError::Unsupported(accepted.join(", ")))
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

/// Stores a received file: its thumbnail made (an image's, decoded from the file within
/// `decoding`'s limits), its record, then its bytes moved into the file store; returns
/// what a post attaches. The upload endpoint and `renkei demo` both take this path.
pub async fn store_upload(
    store: &dyn Store,
    files: &FileStore,
    decoding: &Decoding,
    upload: Upload<'_>,
    incoming: Incoming,
) -> Result<FileRef, AttachError> {
    let kind = upload.kind;
    let (incoming, thumbnail) = if kind.is_image() {
        // The semaphore is never closed.
        let worker = Arc::clone(&decoding.workers)
            .acquire_owned()
            .await
            .map_err(|_| AttachError::BadImage)?;
        let limits = decoding.limits;
        // The file and the permit go with the decoding: if the client goes away, the
        // decoding still ends before another takes its place, and the file is removed then.
        let (incoming, made) = tokio::task::spawn_blocking(move || {
            let made = std::fs::File::open(&incoming.path)
                .map_err(AttachError::from)
                .and_then(|file| thumbnail(std::io::BufReader::new(file), kind, limits));
            drop(worker);
            (incoming, made)
        })
        .await
        .map_err(|_| AttachError::BadImage)?;
        (incoming, Some(made?))
    } else {
        (incoming, None)
    };
    let record = NewFile {
        group: upload.group,
        uploader: upload.uploader,
        name: clean_name(upload.name, kind),
        media_type: kind.media_type().to_string(),
        size: i64::try_from(incoming.size).unwrap_or(i64::MAX),
        content_hash: incoming.hash.clone(),
        thumbnail: thumbnail.is_some(),
        at: upload.at,
    };
    let id = store.create_file(&record).await?;
    files
        .put(upload.group, id, incoming, thumbnail.as_deref())
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

#[cfg(test)]
mod tests {
    use super::{clean_name, detect, thumbnail, AttachError, ImageLimits, Kind};
    use std::io::Cursor;

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
        let limits = ImageLimits::default();
        assert!(thumbnail(
            Cursor::new(b"\x89PNG\r\n\x1a\nnot really"),
            Kind::Png,
            limits
        )
        .is_err());
        let mut png = Vec::new();
        image::RgbImage::new(800, 600)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let small = thumbnail(Cursor::new(&png), Kind::Png, limits).expect("thumbnail");
        assert_eq!(detect(&small), Some(Kind::Jpeg));
        let decoded = image::load_from_memory(&small).expect("decodes");
        assert_eq!((decoded.width(), decoded.height()), (320, 240));
    }

    #[test]
    fn images_beyond_the_limits_are_refused_from_their_header() {
        let mut png = Vec::new();
        image::RgbImage::new(100, 20)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let narrow = ImageLimits {
            max_edge: 99,
            max_bytes: 1 << 20,
        };
        assert!(matches!(
            thumbnail(Cursor::new(&png), Kind::Png, narrow),
            Err(AttachError::ImageTooLarge(_))
        ));
        // 100 × 20 RGB is 6,000 bytes decoded.
        let small = ImageLimits {
            max_edge: 8192,
            max_bytes: 5_999,
        };
        assert!(matches!(
            thumbnail(Cursor::new(&png), Kind::Png, small),
            Err(AttachError::ImageTooLarge(_))
        ));
        let enough = ImageLimits {
            max_edge: 100,
            max_bytes: 6_000,
        };
        assert!(thumbnail(Cursor::new(&png), Kind::Png, enough).is_ok());
    }
}
