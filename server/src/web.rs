//! The web client (`client-web/`), embedded in the binary so that `renkei` alone serves
//! it (no CDN: it must work on a closed hospital network), and the security headers every
//! response carries.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::app::App;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const MANIFEST: &str = "application/manifest+json";
const PNG: &str = "image/png";
const TEXT: &str = "text/plain; charset=utf-8";

/// The service worker's path. From the root, so that its scope is the whole client.
const SERVICE_WORKER: &str = "/sw.js";

/// The text in `sw.js` replaced by [`version`] when it is served.
const VERSION_PLACEHOLDER: &str = "__RENKEI_VERSION__";

/// A client file: its path, type and content.
type File = (&'static str, &'static str, &'static [u8]);

/// Every file of the client.
const FILES: [File; 21] = [
    ("/", HTML, include_bytes!("../../client-web/index.html")),
    ("/app.js", JS, include_bytes!("../../client-web/app.js")),
    ("/ui.js", JS, include_bytes!("../../client-web/ui.js")),
    ("/admin.js", JS, include_bytes!("../../client-web/admin.js")),
    (
        "/notify.js",
        JS,
        include_bytes!("../../client-web/notify.js"),
    ),
    ("/i18n.js", JS, include_bytes!("../../client-web/i18n.js")),
    (
        "/i18n/ja.js",
        JS,
        include_bytes!("../../client-web/i18n/ja.js"),
    ),
    (
        "/i18n/en.js",
        JS,
        include_bytes!("../../client-web/i18n/en.js"),
    ),
    (
        "/drafts.js",
        JS,
        include_bytes!("../../client-web/drafts.js"),
    ),
    ("/app.css", CSS, include_bytes!("../../client-web/app.css")),
    // The installable app (PWA): its manifest, icons and service worker.
    (
        "/manifest.webmanifest",
        MANIFEST,
        include_bytes!("../../client-web/manifest.webmanifest"),
    ),
    (
        "/icons/icon-192.png",
        PNG,
        include_bytes!("../../client-web/icons/icon-192.png"),
    ),
    (
        "/icons/icon-512.png",
        PNG,
        include_bytes!("../../client-web/icons/icon-512.png"),
    ),
    (
        "/icons/maskable-512.png",
        PNG,
        include_bytes!("../../client-web/icons/maskable-512.png"),
    ),
    (
        "/icons/apple-touch-icon.png",
        PNG,
        include_bytes!("../../client-web/icons/apple-touch-icon.png"),
    ),
    (SERVICE_WORKER, JS, include_bytes!("../../client-web/sw.js")),
    // The public list of participating facilities (公示).
    (
        "/facilities",
        HTML,
        include_bytes!("../../client-web/facilities.html"),
    ),
    (
        "/facilities.js",
        JS,
        include_bytes!("../../client-web/facilities.js"),
    ),
    // The public application form of a facility (様式1).
    (
        "/apply",
        HTML,
        include_bytes!("../../client-web/apply.html"),
    ),
    ("/apply.js", JS, include_bytes!("../../client-web/apply.js")),
    // What a search engine may index: the pages, not the API.
    (
        "/robots.txt",
        TEXT,
        include_bytes!("../../client-web/robots.txt"),
    ),
];

/// The client's version: the first 16 hex digits of a SHA-256 over every file's path and
/// content. Any change to any file changes it, hence the bytes of the served `sw.js`, and
/// browsers then install the new worker, whose cache holds the new shell.
fn version(files: &[File]) -> String {
    let mut hash = Sha256::new();
    for (path, _, body) in files {
        // Lengths first: no two different tables hash the same bytes.
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((body.len() as u64).to_le_bytes());
        hash.update(body);
    }
    hash.finalize()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `sw.js` as served: its version placeholder replaced.
#[cfg(test)]
static WORKER: LazyLock<Vec<u8>> = LazyLock::new(|| versioned_worker(&FILES));

fn versioned_worker(files: &[File]) -> Vec<u8> {
    let source = files
        .iter()
        .find(|(path, _, _)| *path == SERVICE_WORKER)
        .map(|(_, _, body)| String::from_utf8_lossy(body))
        .unwrap_or_default();
    source
        .replace(VERSION_PLACEHOLDER, &version(files))
        .into_bytes()
}

/// `/favicon.ico`: browsers ask for it whatever the page says. An ICO container around
/// the 180 px PNG (an ICO may hold PNG data since Windows Vista; every current browser
/// reads it).
const FAVICON: &str = "/favicon.ico";
const ICO: &str = "image/x-icon";
const FAVICON_SOURCE: &[u8] = include_bytes!("../../client-web/icons/apple-touch-icon.png");

fn favicon(png: &[u8]) -> Vec<u8> {
    // The PNG's size from its IHDR chunk (bytes 16..24, big-endian); 0 in an ICO means 256.
    let side = |at: usize| -> u8 {
        let bytes: [u8; 4] = png
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 4]);
        u8::try_from(u32::from_be_bytes(bytes)).unwrap_or(0)
    };
    let mut ico = Vec::with_capacity(22 + png.len());
    ico.extend_from_slice(&[0, 0, 1, 0, 1, 0]); // reserved, type 1 (icon), one image
    ico.extend_from_slice(&[side(16), side(20), 0, 0]); // width, height, no palette
    ico.extend_from_slice(&1u16.to_le_bytes()); // colour planes
    ico.extend_from_slice(&32u16.to_le_bytes()); // bits per pixel
    ico.extend_from_slice(&u32::try_from(png.len()).unwrap_or(0).to_le_bytes());
    ico.extend_from_slice(&22u32.to_le_bytes()); // the image's offset: after this header
    ico.extend_from_slice(png);
    ico
}

/// One file as served: its body in each encoding, computed once at startup.
///
/// Caching: every file carries a strong `ETag` (a hash of its content), so a revalidation
/// costs a `304` and no body. The pages (`/`, `/facilities`) are `no-cache` and refer to
/// the scripts, styles and icons as `/app.js?v=<hash>`; a request whose `v` is the file's
/// current hash is answered `immutable` for a year, so a phone fetches each version of the
/// app once. A plain or stale URL (the service worker's shell, `importScripts`, an old
/// page) gets the current file with `no-cache`: never a year of the wrong version.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    /// The first 16 hex digits of the SHA-256 of `identity`.
    hash: String,
    identity: Bytes,
    /// `None` for what does not compress (PNG, ICO).
    gzip: Option<Bytes>,
    brotli: Option<Bytes>,
}

/// Every file as served, with the pages' references versioned.
static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| assets(&FILES));

fn hex16(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn is_page(content_type: &str) -> bool {
    content_type == HTML
}

fn compressible(content_type: &str) -> bool {
    content_type != PNG && content_type != ICO
}

fn gzip(body: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(body).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

fn brotli(body: &[u8]) -> Option<Bytes> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &body[..], &mut out, &params).ok()?;
    Some(Bytes::from(out))
}

fn asset(path: &'static str, content_type: &'static str, body: Vec<u8>) -> Asset {
    let (gzip, brotli) = if compressible(content_type) {
        (gzip(&body), brotli(&body))
    } else {
        (None, None)
    };
    Asset {
        path,
        content_type,
        hash: hex16(&body),
        identity: Bytes::from(body),
        gzip,
        brotli,
    }
}

fn assets(files: &[File]) -> Vec<Asset> {
    let mut assets: Vec<Asset> = files
        .iter()
        .filter(|(path, content_type, _)| *path != SERVICE_WORKER && !is_page(content_type))
        .map(|&(path, content_type, body)| asset(path, content_type, body.to_vec()))
        .collect();
    assets.push(asset(FAVICON, ICO, favicon(FAVICON_SOURCE)));
    // The pages last: they name the others' hashes.
    let pages: Vec<Asset> = files
        .iter()
        .filter(|(_, content_type, _)| is_page(content_type))
        .map(|&(path, content_type, body)| {
            asset(
                path,
                content_type,
                versioned_page(body, &assets).into_bytes(),
            )
        })
        .collect();
    assets.extend(pages);
    assets.push(asset(SERVICE_WORKER, JS, versioned_worker(files)));
    assets
}

/// A page with each `src="/x"` and `href="/x"` of a served file turned into
/// `"/x?v=<hash>"`.
fn versioned_page(body: &[u8], assets: &[Asset]) -> String {
    let mut page = String::from_utf8_lossy(body).into_owned();
    // Not the manifest: browsers know an installed app by its manifest's URL.
    for asset in assets.iter().filter(|asset| asset.content_type != MANIFEST) {
        for attribute in ["src", "href"] {
            page = page.replace(
                &format!("{attribute}=\"{}\"", asset.path),
                &format!("{attribute}=\"{}?v={}\"", asset.path, asset.hash),
            );
        }
    }
    page
}

/// The client's files.
pub fn routes() -> Router<Arc<App>> {
    // Compressed here, at startup, rather than at the first request.
    ASSETS
        .iter()
        .fold(Router::new(), |router, asset: &'static Asset| {
            router.route(
                asset.path,
                get(move |headers: HeaderMap, uri: Uri| async move {
                    serve(asset, &headers, uri.query())
                }),
            )
        })
}

/// The codings a request accepts (`Accept-Encoding`), without those given `q=0`.
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|param| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !refused
        })
}

fn serve(asset: &Asset, headers: &HeaderMap, query: Option<&str>) -> Response {
    // Brotli when accepted (the smaller), else gzip, else the file as it is.
    let (coding, body) = match (&asset.brotli, &asset.gzip) {
        (Some(body), _) if accepts(headers, "br") => (Some("br"), body),
        (_, Some(body)) if accepts(headers, "gzip") => (Some("gzip"), body),
        _ => (None, &asset.identity),
    };
    // One tag per representation, as a strong validator must.
    let etag = match coding {
        Some(coding) => format!("\"{}-{coding}\"", asset.hash),
        None => format!("\"{}\"", asset.hash),
    };
    // The pages and the worker are how a new version is found: never cached for long.
    let versioned = !is_page(asset.content_type) && asset.path != SERVICE_WORKER;
    let current = versioned && query == Some(format!("v={}", asset.hash).as_str());
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        // Revalidate every time: a new server version must not meet an old client.
        "no-cache"
    };
    let mut response = if not_modified(headers, &asset.hash) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response =
            ([(header::CONTENT_TYPE, asset.content_type)], body.clone()).into_response();
        if let Some(coding) = coding {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        response
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, etag);
    }
    if asset.gzip.is_some() || asset.brotli.is_some() {
        response_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if asset.path == SERVICE_WORKER {
        // Its path gives it the root scope already; said anyway, for a proxy that moves it.
        response_headers.insert(
            HeaderName::from_static("service-worker-allowed"),
            HeaderValue::from_static("/"),
        );
    }
    response
}

/// Whether `If-None-Match` names this content, in any of its encodings.
fn not_modified(headers: &HeaderMap, hash: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|tag| {
            tag == "*"
                || tag == hash
                || tag
                    .strip_prefix(hash)
                    .is_some_and(|rest| rest == "-br" || rest == "-gzip")
        })
}

/// Headers on every response: scripts only from this server (no inline script, so
/// injected text cannot run), no framing, no MIME sniffing, no referrer to outside links;
/// with built-in TLS or behind a TLS proxy, HSTS (browsers then never try plain HTTP for a
/// year).
pub async fn security_headers(State(app): State<Arc<App>>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if app.config.hsts() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in set {
        // A response that set its own (a file: stricter) keeps it.
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_worker_carries_the_version_of_every_file() {
        let served = String::from_utf8(WORKER.clone()).unwrap();
        assert!(!served.contains(VERSION_PLACEHOLDER));
        let version = version(&FILES);
        assert_eq!(version.len(), 16);
        assert!(served.contains(&format!("\"{version}\"")));
    }

    #[test]
    fn a_change_to_any_file_changes_the_version() {
        let before = version(&FILES);
        for i in 0..FILES.len() {
            let mut changed = FILES;
            let edited = [FILES[i].2, b" "].concat().leak();
            changed[i].2 = edited;
            assert_ne!(version(&changed), before, "{}", FILES[i].0);
            assert_ne!(versioned_worker(&changed), *WORKER, "{}", FILES[i].0);
        }
        assert_eq!(version(&FILES), before, "the same files, the same version");
    }

    fn asset(path: &str) -> &'static Asset {
        ASSETS.iter().find(|a| a.path == path).expect(path)
    }

    fn request(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    fn header(response: &Response, name: HeaderName) -> Option<&str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn the_compressed_files_decode_to_the_same_bytes() {
        use std::io::Read;
        let mut compressed = 0;
        for asset in ASSETS.iter() {
            if let Some(br) = &asset.brotli {
                let mut decoded = Vec::new();
                brotli::Decompressor::new(&br[..], 4096)
                    .read_to_end(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, asset.identity, "{}", asset.path);
                assert!(br.len() < asset.identity.len(), "{}", asset.path);
                compressed += 1;
            }
            if let Some(gz) = &asset.gzip {
                let mut decoded = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, asset.identity, "{}", asset.path);
            }
        }
        // Scripts, styles, pages, manifest, robots.txt, the worker.
        assert!(compressed >= 12, "{compressed}");
        assert!(
            asset("/icons/icon-192.png").brotli.is_none(),
            "PNG is compressed already"
        );
    }

    #[tokio::test]
    async fn brotli_or_gzip_as_the_request_accepts() {
        let app = asset("/app.js");
        let cases = [
            ("gzip, deflate, br, zstd", Some("br")),
            ("gzip", Some("gzip")),
            ("br;q=0, gzip;q=0.5", Some("gzip")),
            ("BR", Some("br")),
            ("identity", None),
            ("gzip;q=0", None),
        ];
        for (accept, coding) in cases {
            let response = serve(app, &request(&[(header::ACCEPT_ENCODING, accept)]), None);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                header(&response, header::CONTENT_ENCODING),
                coding,
                "{accept}"
            );
            assert_eq!(header(&response, header::VARY), Some("accept-encoding"));
            assert_eq!(header(&response, header::CONTENT_TYPE), Some(JS));
            let expected = match coding {
                Some("br") => app.brotli.clone().unwrap(),
                Some(_) => app.gzip.clone().unwrap(),
                None => app.identity.clone(),
            };
            assert_eq!(body(response).await, expected, "{accept}");
        }
        let plain = serve(app, &HeaderMap::new(), None);
        assert_eq!(header(&plain, header::CONTENT_ENCODING), None);
        assert_eq!(body(plain).await, app.identity);
    }

    #[test]
    fn only_the_current_versioned_url_is_cached_for_good() {
        let app = asset("/app.js");
        let accept = request(&[(header::ACCEPT_ENCODING, "br")]);
        let current = format!("v={}", app.hash);
        let cache = |query: Option<&str>| {
            serve(app, &accept, query)
                .headers()
                .get(header::CACHE_CONTROL)
                .unwrap()
                .clone()
        };
        assert_eq!(cache(Some(&current)), "public, max-age=31536000, immutable");
        assert_eq!(cache(None), "no-cache");
        assert_eq!(
            cache(Some("v=0123456789abcdef")),
            "no-cache",
            "a stale version"
        );
        for page in ["/", "/facilities", SERVICE_WORKER] {
            let response = serve(
                asset(page),
                &accept,
                Some(&format!("v={}", asset(page).hash)),
            );
            assert_eq!(header(&response, header::CACHE_CONTROL), Some("no-cache"));
        }
    }

    #[test]
    fn the_pages_name_every_file_by_its_version() {
        for page in ["/", "/facilities", "/apply"] {
            let html = std::str::from_utf8(&asset(page).identity).unwrap();
            let mut named = 0;
            for (attribute, rest) in html
                .split(['<', ' '])
                .filter_map(|part| part.split_once("=\"/"))
            {
                if attribute != "src" && attribute != "href" {
                    continue;
                }
                let reference = rest.split('"').next().unwrap();
                // Links to pages stay plain: a page is never cached for long.
                if reference == "manifest.webmanifest"
                    || FILES.iter().any(|&(path, content_type, _)| {
                        is_page(content_type) && path == format!("/{reference}")
                    })
                {
                    continue;
                }
                let (path, version) = reference.split_once("?v=").expect(reference);
                assert_eq!(version, asset(&format!("/{path}")).hash, "{page}: {path}");
                named += 1;
            }
            assert!(named >= 3, "{page}: {named}");
        }
        let index = std::str::from_utf8(&asset("/").identity).unwrap();
        assert!(index.contains(&format!("src=\"/app.js?v={}\"", asset("/app.js").hash)));
    }

    #[tokio::test]
    async fn a_known_version_is_not_sent_again() {
        let app = asset("/app.css");
        for tag in [
            format!("\"{}\"", app.hash),
            format!("\"{}-br\"", app.hash),
            format!("W/\"{}-gzip\", \"other\"", app.hash),
        ] {
            let response = serve(
                app,
                &request(&[
                    (header::IF_NONE_MATCH, &tag),
                    (header::ACCEPT_ENCODING, "br"),
                ]),
                None,
            );
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{tag}");
            assert_eq!(
                header(&response, header::ETAG),
                Some(format!("\"{}-br\"", app.hash).as_str())
            );
            assert!(body(response).await.is_empty());
        }
        let changed = serve(
            app,
            &request(&[(header::IF_NONE_MATCH, "\"0123456789abcdef\"")]),
            None,
        );
        assert_eq!(changed.status(), StatusCode::OK);
    }

    #[test]
    fn the_favicon_is_an_icon_holding_the_png() {
        let ico = &asset(FAVICON).identity;
        assert_eq!(ico[..6], [0, 0, 1, 0, 1, 0]);
        assert_eq!((ico[6], ico[7]), (180, 180));
        assert_eq!(ico[22..], *FAVICON_SOURCE);
        let response = serve(asset(FAVICON), &HeaderMap::new(), None);
        assert_eq!(header(&response, header::CONTENT_TYPE), Some(ICO));
    }

    #[test]
    fn the_worker_keeps_its_root_scope() {
        let response = serve(asset(SERVICE_WORKER), &HeaderMap::new(), None);
        assert_eq!(
            header(&response, HeaderName::from_static("service-worker-allowed")),
            Some("/")
        );
        assert_eq!(*asset(SERVICE_WORKER).identity, *WORKER);
    }

    /// The worker's install caches the shell in one `addAll`, which fails whole when one
    /// path is missing: every path it names must be served.
    #[test]
    fn every_shell_path_of_the_worker_is_served() {
        let source = std::str::from_utf8(
            FILES
                .iter()
                .find(|(path, _, _)| *path == SERVICE_WORKER)
                .unwrap()
                .2,
        )
        .unwrap();
        let start = source
            .find("const SHELL = [")
            .expect("sw.js lists its SHELL");
        let end = start + source[start..].find("];").unwrap();
        let shell: Vec<&str> = source[start..end].split('"').skip(1).step_by(2).collect();
        assert!(shell.len() >= 8, "{shell:?}");
        for path in shell {
            assert!(
                FILES.iter().any(|(served, _, _)| *served == path),
                "{path} is cached but not served"
            );
        }
    }
}
