//! Files and images (添付ファイル): uploaded into a group, recognised by content, posted
//! like a post, downloaded only by those who may read the group (and on record), never
//! served to run, erased with their post.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::{code, Backend, Client, TestApp};
use renkei_protocol::{ClientMessage, EventData, FileRef, ServerMessage};
use renkei_testbed::OwnS3;
use reqwest::header::HeaderMap;
use tokio::io::AsyncWriteExt as _;

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb([200, 80, 80]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("png");
    bytes
}

const PDF: &[u8] =
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";

/// Downloads `path` as `user`: the status, the headers and the bytes.
async fn download(app: &TestApp, user: i64, path: &str) -> (u16, HeaderMap, Vec<u8>) {
    common::download(app.addr, &app.token(user).await, path).await
}

async fn post_file(client: &mut Client, group: i64, client_id: &str, text: &str, file: i64) {
    client
        .send(&ClientMessage::Post {
            group,
            client_id: client_id.into(),
            text: text.into(),
            file: Some(file),
        })
        .await;
}

/// Where a test finds a file's bytes.
enum Place<'a> {
    Local(&'a std::path::Path),
    S3(&'a OwnS3),
}

impl Place<'_> {
    async fn holds(&self, group: i64, id: i64) -> bool {
        match self {
            Place::Local(dir) => dir.join(group.to_string()).join(id.to_string()).exists(),
            Place::S3(s3) => s3
                .exists("renkei", &format!("files/{group}/{id}"))
                .await
                .expect("moto_server answers"),
        }
    }
}

async fn files_are_posted_read_by_members_and_erased_with_their_post(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let files = app.config.data_dir.join("files");
    posted_read_and_erased(&app, Place::Local(&files)).await;
}

/// The same on an S3-compatible object store (moto's server, on loopback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_an_s3_compatible_store() {
    let s3 = OwnS3::start(renkei_testbed::free_port().expect("port"))
        .await
        .expect("moto_server (pip install 'moto[server]')");
    s3.create_bucket("renkei").await.expect("bucket");
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.file_store_url = Some("s3://renkei/files".into());
        c.s3_endpoint = Some(s3.endpoint());
        c.s3_access_key_id = Some("renkei-test".into());
        c.s3_secret_access_key = Some("renkei-test-secret".into());
    })
    .await;
    posted_read_and_erased(&app, Place::S3(&s3)).await;
    assert!(
        !app.config.data_dir.join("files").exists(),
        "nothing on the local disk"
    );
}

async fn posted_read_and_erased(app: &TestApp, place: Place<'_>) {
    let f = app.fixture.clone();
    let g = f.patient_group;
    let photo = png(800, 600);

    // Recognised by content whatever its name; a thumbnail for images.
    let (status, body) = app
        .upload(f.alice, g, "褥瘡の写真.txt", photo.clone())
        .await;
    assert_eq!(status, 201, "{body}");
    let file: FileRef = serde_json::from_value(body).expect("file");
    assert_eq!(
        (file.media_type.as_str(), file.thumbnail),
        ("image/png", true)
    );
    assert_eq!(file.name, "褥瘡の写真.txt");
    assert_eq!(file.size, photo.len() as i64);

    // Posted like a post: every member gets it with the file.
    let mut alice = app.client(f.alice).await;
    let mut bob = app.client(f.bob).await;
    bob.sync(g, 0).await;
    post_file(
        &mut alice,
        g,
        "a-1",
        "仙骨部の褥瘡、写真を添付します",
        file.id,
    )
    .await;
    let event = bob.next_event().await;
    match &event.data {
        EventData::Post {
            file: Some(got), ..
        } => assert_eq!(got, &file),
        other => panic!("a post with its file, got {other:?}"),
    }
    // Once: the same file cannot go on a second post.
    post_file(&mut alice, g, "a-2", "もう一度", file.id).await;
    let refused = loop {
        match alice.recv().await {
            ServerMessage::Error(e) => break e,
            _ => continue,
        }
    };
    assert_eq!(
        (refused.code, refused.client_id.as_deref()),
        (renkei_protocol::ErrorCode::NotFound, Some("a-2"))
    );
    // And on catch-up and history.
    let later = app.client(f.dave).await.sync(g, 0).await;
    assert!(matches!(&later[0].data, EventData::Post { file: Some(got), .. } if got.id == file.id));

    // Members download it, as an attachment unless an image is asked for inline; it runs
    // nothing wherever it is opened.
    let (status, headers, bytes) =
        download(app, f.bob, &format!("/api/v1/files/{}", file.id)).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, photo);
    assert_eq!(headers["content-type"], "image/png");
    assert!(headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment"));
    assert!(headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .contains("filename*=UTF-8''%E8%A4%A5"));
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (_, headers, _) = download(
        app,
        f.bob,
        &format!("/api/v1/files/{}?inline=true", file.id),
    )
    .await;
    assert!(headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("inline"));
    let (status, headers, thumb) =
        download(app, f.dave, &format!("/api/v1/files/{}/thumbnail", file.id)).await;
    assert_eq!(
        (status, &headers["content-type"]),
        (200, &"image/jpeg".parse().expect("value"))
    );
    let small = image::load_from_memory(&thumb).expect("a JPEG");
    assert_eq!((small.width(), small.height()), (320, 240));

    // Not to others: not a member, not the other group's members.
    let (status, _, _) = download(app, f.carol, &format!("/api/v1/files/{}", file.id)).await;
    assert_eq!(status, 403);
    // An upload not posted yet is its uploader's alone.
    let (_, body) = app.upload(f.alice, g, "紹介状.pdf", PDF.to_vec()).await;
    let letter: FileRef = serde_json::from_value(body).expect("file");
    assert_eq!(
        (letter.media_type.as_str(), letter.thumbnail),
        ("application/pdf", false)
    );
    let (status, _, _) = download(app, f.bob, &format!("/api/v1/files/{}", letter.id)).await;
    assert_eq!(status, 404);
    let (status, headers, _) = download(
        app,
        f.alice,
        &format!("/api/v1/files/{}?inline=true", letter.id),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment"),
        "only images are shown inline"
    );
    // A file larger than one S3 part (5 MiB) arrives whole, in the store's own way (a
    // rename on disk, a multipart upload to S3).
    let large: Vec<u8> = [
        PDF.to_vec(),
        (0..6_000_000u32).map(|i| (i % 251) as u8).collect(),
    ]
    .concat();
    let (status, body) = app.upload(f.alice, g, "large.pdf", large.clone()).await;
    assert_eq!(status, 201, "{body}");
    let stored: FileRef = serde_json::from_value(body).expect("file");
    assert_eq!(stored.size, large.len() as i64);
    let (status, _, bytes) = download(app, f.alice, &format!("/api/v1/files/{}", stored.id)).await;
    assert_eq!(status, 200);
    assert!(bytes == large, "the same bytes back");

    // Someone else's upload cannot be attached.
    post_file(&mut bob, g, "b-1", "他人のファイル", letter.id).await;
    let refused = loop {
        match bob.recv().await {
            ServerMessage::Error(e) => break e,
            _ => continue,
        }
    };
    assert_eq!(refused.code, renkei_protocol::ErrorCode::NotFound);

    // Every download is on record.
    let downloads = app.audit_records("GET /api/v1/files/{id}").await;
    assert!(downloads
        .iter()
        .any(|r| r["actor"] == f.bob && r["result"] == "200"));
    assert!(downloads
        .iter()
        .any(|r| r["actor"] == f.carol && r["result"] == "403"));

    // Deleting the post erases the file.
    assert!(place.holds(g, file.id).await);
    app.delete_post(f.alice, g, event.seq).await;
    assert!(!place.holds(g, file.id).await, "the bytes are gone");
    let (status, _, _) = download(app, f.bob, &format!("/api/v1/files/{}", file.id)).await;
    assert_eq!(status, 404);
    let (status, _, _) =
        download(app, f.bob, &format!("/api/v1/files/{}/thumbnail", file.id)).await;
    assert_eq!(status, 404);
}

async fn uploads_are_checked_by_content_size_and_membership(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.max_file_bytes = 50_000;
        c.file_types = vec!["png".into(), "pdf".into()];
    })
    .await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let (status, body) = app
        .upload(
            f.alice,
            g,
            "page.png",
            b"<html><script>alert(1)</script>".to_vec(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (415, "unsupported_media_type"),
        "not by its name"
    );
    let (status, body) = app
        .upload(
            f.alice,
            g,
            "drawing.svg",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
        )
        .await;
    assert_eq!((status, code(&body)), (415, "unsupported_media_type"));
    let mut jpeg = Vec::new();
    image::RgbImage::new(10, 10)
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("jpeg");
    let (status, _) = app.upload(f.alice, g, "photo.jpg", jpeg).await;
    assert_eq!(status, 415, "not among the configured types");
    let (status, body) = app
        .upload(
            f.alice,
            g,
            "broken.png",
            b"\x89PNG\r\n\x1a\nbroken".to_vec(),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (415, "unsupported_media_type"),
        "an image must decode"
    );
    let (status, body) = app
        .upload(f.alice, g, "big.pdf", [PDF, &vec![b' '; 60_000]].concat())
        .await;
    assert_eq!((status, code(&body)), (413, "too_large"));
    let (status, body) = app.upload(f.carol, g, "x.pdf", PDF.to_vec()).await;
    assert_eq!((status, code(&body)), (403, "not_member"));
    let (status, _) = app
        .upload(f.alice, f.archived_group, "x.pdf", PDF.to_vec())
        .await;
    assert_eq!(status, 403, "an archived group takes no files");
    let (status, _) = app.upload(f.alice, g, "x.pdf", PDF.to_vec()).await;
    assert_eq!(status, 201);
}

on_both_backends!(
    files_are_posted_read_by_members_and_erased_with_their_post,
    uploads_are_checked_by_content_size_and_membership
);

/// Uploads nobody posted are erased by the archive process; an old one cannot be posted.
async fn abandoned_uploads_are_erased(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.archive_job_seconds = 1).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let (_, body) = app.upload(f.alice, g, "old.pdf", PDF.to_vec()).await;
    let old: FileRef = serde_json::from_value(body).expect("file");
    let (_, body) = app.upload(f.alice, g, "new.pdf", PDF.to_vec()).await;
    let new: FileRef = serde_json::from_value(body).expect("file");
    // Uploaded 13 hours ago: too old to post, not yet erased.
    common::execute(
        &app.db.url,
        &format!(
            "UPDATE files SET created_at = created_at - 46800000 WHERE id = {}",
            old.id
        ),
    )
    .await;
    let mut alice = app.client(f.alice).await;
    post_file(&mut alice, g, "a-1", "古い添付", old.id).await;
    let refused = loop {
        match alice.recv().await {
            ServerMessage::Error(e) => break e,
            _ => continue,
        }
    };
    assert_eq!(refused.code, renkei_protocol::ErrorCode::NotFound);
    // A day and more: the archive process erases it, bytes and all.
    common::execute(
        &app.db.url,
        &format!(
            "UPDATE files SET created_at = created_at - 43200000 WHERE id = {}",
            old.id
        ),
    )
    .await;
    let stored = app
        .config
        .data_dir
        .join("files")
        .join(g.to_string())
        .join(old.id.to_string());
    for _ in 0..100 {
        if !stored.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!stored.exists(), "erased");
    let (status, _, _) = download(&app, f.alice, &format!("/api/v1/files/{}", old.id)).await;
    assert_eq!(status, 404);
    // The same run left the fresh upload alone.
    let (status, _, _) = download(&app, f.alice, &format!("/api/v1/files/{}", new.id)).await;
    assert_eq!(status, 200);
}

on_both_backends!(abandoned_uploads_are_erased);

/// Downloads and thumbnails are on the audit trail with the file's group, so that the
/// facility owning the group sees who read its patient's files (issue 20, finding 6).
async fn downloads_are_on_record_with_the_files_group(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let (status, body) = app.upload(f.alice, g, "wound.png", png(64, 48)).await;
    assert_eq!(status, 201, "{body}");
    let file: FileRef = serde_json::from_value(body).expect("file");
    let mut alice = app.client(f.alice).await;
    let mut bob = app.client(f.bob).await;
    bob.sync(g, 0).await;
    post_file(&mut alice, g, "a-1", "創部の写真", file.id).await;
    bob.next_event().await;

    let (status, _, _) = download(&app, f.bob, &format!("/api/v1/files/{}", file.id)).await;
    assert_eq!(status, 200);
    let (status, _, _) =
        download(&app, f.bob, &format!("/api/v1/files/{}/thumbnail", file.id)).await;
    assert_eq!(status, 200);
    // carol is not a member: her attempt is on the group's record too.
    let (status, _, _) = download(&app, f.carol, &format!("/api/v1/files/{}", file.id)).await;
    assert_eq!(status, 403);

    // The facility's admin asks for the group's records.
    let path = format!("/api/v1/facilities/{}/audit?group={g}", f.facility);
    let records = app
        .api(f.adam)
        .await
        .ok(reqwest::Method::GET, &path, None)
        .await;
    let records = records.as_array().expect("records");
    let of = |action: &str, actor: i64, result: &str| {
        records.iter().any(|r| {
            r["action"] == action && r["actor"] == actor && r["result"] == result && r["group"] == g
        })
    };
    assert!(of("GET /api/v1/files/{id}", f.bob, "200"), "{records:?}");
    assert!(
        of("GET /api/v1/files/{id}/thumbnail", f.bob, "200"),
        "{records:?}"
    );
    assert!(of("GET /api/v1/files/{id}", f.carol, "403"), "{records:?}");
}

/// A PNG of `width` × `height` black 1-bit pixels: a few KiB that decode to
/// `width` × `height` bytes.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[1, 0, 0, 0, 0]); // 1 bit, grey, deflate, no filter, no interlace
    let row = vec![0u8; 1 + width.div_ceil(8) as usize]; // filter byte "none", then pixels
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    for _ in 0..height {
        zlib.write_all(&row).expect("compress");
    }
    let data = zlib.finish().expect("compress");
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &data);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Small files declaring huge images are refused from their header, with a clear error,
/// and the server goes on (issue 20, finding 5).
async fn decompression_bombs_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    // 9,000 pixels wide: beyond RENKEI_IMAGE_MAX_EDGE (8,192), 81 MB decoded, 10 KiB sent.
    let wide = png_bomb(9_000, 9_000);
    assert!(wide.len() < 100_000, "{}", wide.len());
    // 7,000 × 7,000 within the edge, but 196 MB decoded: beyond RENKEI_IMAGE_MAX_DECODE_MIB.
    let heavy = renkei_testbed::gif_bomb(7_000, 7_000);
    for (name, bomb) in [("wide.png", wide), ("heavy.gif", heavy)] {
        let (status, body) = app.upload(f.alice, g, name, bomb).await;
        assert_eq!((status, code(&body)), (413, "too_large"), "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("image is too large"), "{message}");
    }
    // Still up, and an image within the limits is taken with its thumbnail.
    let (status, body) = app.upload(f.alice, g, "photo.png", png(1200, 900)).await;
    assert_eq!(status, 201, "{body}");
    let file: FileRef = serde_json::from_value(body).expect("file");
    assert!(file.thumbnail);
    let (status, _, thumb) = download(
        &app,
        f.alice,
        &format!("/api/v1/files/{}/thumbnail", file.id),
    )
    .await;
    assert_eq!(status, 200);
    let small = image::load_from_memory(&thumb).expect("a JPEG");
    assert_eq!((small.width(), small.height()), (320, 240));
}

/// An upload whose body arrives slowly: its head and `first` bytes of a body announced as
/// `length` bytes; the rest never comes. Dropping it breaks the upload off.
async fn held_upload(
    app: &TestApp,
    user: i64,
    first: &[u8],
    length: usize,
) -> tokio::net::TcpStream {
    let token = app.token(user).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/groups/{}/files?name=slow.png HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\n\r\n",
        app.fixture.patient_group, app.addr
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(first).await.expect("first bytes");
    stream.flush().await.expect("flush");
    stream
}

/// The temporary files of uploads in progress.
fn incoming(app: &TestApp) -> usize {
    std::fs::read_dir(app.config.data_dir.join("incoming")).map_or(0, |dir| dir.count())
}

/// Waits (at most 10 s) until `count` uploads are in progress on disk.
async fn until_incoming(app: &TestApp, count: usize) {
    for _ in 0..200 {
        if incoming(app) == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} temporary files, not {count}", incoming(app));
}

async fn upload_answer(app: &TestApp, user: i64) -> (u16, Option<String>, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(app.url(&format!(
            "/api/v1/groups/{}/files",
            app.fixture.patient_group
        )))
        .query(&[("name", "x.pdf")])
        .bearer_auth(app.token(user).await)
        .body(PDF.to_vec())
        .send()
        .await
        .expect("upload");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, response.json().await.unwrap_or_default())
}

/// Uploads stream to temporary files; they are bounded per person and per node (429 with
/// `Retry-After` beyond); one broken off leaves no temporary file (issue 20, finding 5).
async fn uploads_in_progress_are_bounded_and_leave_nothing_behind(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.uploads_per_user = 2;
        c.uploads_at_once = 3;
    })
    .await;
    let f = app.fixture.clone();
    let photo = png(800, 600);
    let first = &photo[..100];
    // Two of alice's uploads arrive slowly: each is being written to its own file.
    let a1 = held_upload(&app, f.alice, first, photo.len()).await;
    let a2 = held_upload(&app, f.alice, first, photo.len()).await;
    until_incoming(&app, 2).await;
    let (status, retry, body) = upload_answer(&app, f.alice).await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("uploads at once per person"));
    // Bob's is the node's third: dave's finds none left.
    let b1 = held_upload(&app, f.bob, first, photo.len()).await;
    until_incoming(&app, 3).await;
    let (status, retry, body) = upload_answer(&app, f.dave).await;
    assert_eq!((status, code(&body)), (429, "overloaded"), "{body}");
    assert_eq!(retry.as_deref(), Some("1"));

    // The clients go away mid-body: their temporary files go too, and their places.
    drop((a1, a2, b1));
    until_incoming(&app, 0).await;
    let (status, _, body) = upload_answer(&app, f.alice).await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = upload_answer(&app, f.dave).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(incoming(&app), 0, "nothing left behind");

    // The two shed uploads did nothing: counted, not on the audit trail, which holds the
    // two stored ones (and the three broken off, refused as incomplete).
    let results: Vec<String> = app
        .audit_records("POST /api/v1/groups/{id}/files")
        .await
        .iter()
        .map(|r| r["result"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        results.iter().filter(|r| *r == "201").count(),
        2,
        "{results:?}"
    );
    assert!(!results.iter().any(|r| r == "429"), "{results:?}");
    assert_eq!(app.metric("renkei_http_requests_shed_total").await, 2.0);
}

on_both_backends!(
    downloads_are_on_record_with_the_files_group,
    decompression_bombs_are_refused,
    uploads_in_progress_are_bounded_and_leave_nothing_behind
);
