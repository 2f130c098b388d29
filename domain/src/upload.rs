//! Uploads (添付ファイル): the kinds of file taken, recognised by their content, and how
//! long an uploaded file waits for the post that takes it.

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

    /// The kind whose media type this is.
    pub fn of_media_type(media_type: &str) -> Option<Kind> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
