//! Uploads (添付ファイル): a file is uploaded first and taken by a post after; how long
//! it waits for one.

/// An upload is posted within this time (milliseconds), or uploaded again.
pub const POST_WITHIN_MS: i64 = 12 * 3_600_000;
/// Uploads no post took are erased after this time (twice the above, so that the clean-up
/// never races a post taking one).
pub const ABANDONED_AFTER_MS: i64 = 2 * POST_WITHIN_MS;
