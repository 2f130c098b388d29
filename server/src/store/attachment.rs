//! Storage of files' records (添付ファイル): who uploaded what into which group, its type
//! and hash, the post it belongs to. The bytes are in the file store (`crate::attachment`).

use async_trait::async_trait;
use renkei_protocol::{GroupId, Millis, Seq, UserId};

use super::StoreError;

/// A new file's record.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub group: GroupId,
    pub uploader: UserId,
    pub name: String,
    pub media_type: String,
    pub size: i64,
    /// SHA-256 of the bytes.
    pub content_hash: Vec<u8>,
    pub thumbnail: bool,
    pub at: Millis,
}

/// A file's record as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredFile {
    pub id: i64,
    pub group_id: GroupId,
    pub uploader_id: UserId,
    pub name: String,
    pub media_type: String,
    pub size: i64,
    pub content_hash: Vec<u8>,
    pub has_thumbnail: bool,
    pub created_at: Millis,
    pub deleted_at: Option<Millis>,
    /// The post it is attached to.
    pub seq: Option<Seq>,
}

/// Files' records. Attaching a file to a post happens in the post's commit
/// (`Store::append_posts`), erasing it in the deletion of the post.
#[async_trait]
pub trait Attachments: Send + Sync {
    /// Records an uploaded file (not attached to any post yet) and returns its id.
    async fn create_file(&self, file: &NewFile) -> Result<i64, StoreError>;
    /// A file's record, with the post it is attached to.
    async fn file(&self, id: i64) -> Result<Option<StoredFile>, StoreError>;
    /// Marks deleted the uploads made before `before` that no post took, and returns them
    /// (group, id) for their bytes to go.
    async fn abandon_uploads(
        &self,
        before: Millis,
        at: Millis,
    ) -> Result<Vec<(GroupId, i64)>, StoreError>;
}

macro_rules! attachment_store {
    ($store:ty) => {
        #[async_trait]
        impl Attachments for $store {
            async fn create_file(&self, file: &NewFile) -> Result<i64, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO files (group_id, uploader_id, name, media_type, size, \
                     content_hash, has_thumbnail, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                )
                .bind(file.group)
                .bind(file.uploader)
                .bind(&file.name)
                .bind(&file.media_type)
                .bind(file.size)
                .bind(&file.content_hash)
                .bind(file.thumbnail)
                .bind(file.at)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn file(&self, id: i64) -> Result<Option<StoredFile>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT f.id, f.group_id, f.uploader_id, f.name, f.media_type, f.size, \
                     f.content_hash, f.has_thumbnail, f.created_at, f.deleted_at, e.seq \
                     FROM files f LEFT JOIN events e ON e.file_id = f.id WHERE f.id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn abandon_uploads(
                &self,
                before: Millis,
                at: Millis,
            ) -> Result<Vec<(GroupId, i64)>, StoreError> {
                Ok(sqlx::query_as(
                    "UPDATE files SET deleted_at = $2 WHERE deleted_at IS NULL \
                     AND created_at < $1 AND NOT EXISTS \
                     (SELECT 1 FROM events e WHERE e.file_id = files.id) \
                     RETURNING group_id, id",
                )
                .bind(before)
                .bind(at)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

attachment_store!(super::SqliteStore);
attachment_store!(super::PgStore);
