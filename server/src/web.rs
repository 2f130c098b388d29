//! The web client (`client-web/`), embedded in the binary so that `renkei` alone serves
//! it (no CDN: it must work on a closed hospital network), and the security headers every
//! response carries.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::app::App;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const MANIFEST: &str = "application/manifest+json";
const PNG: &str = "image/png";

/// The service worker's path. From the root, so that its scope is the whole client.
const SERVICE_WORKER: &str = "/sw.js";

/// The text in `sw.js` replaced by [`version`] when it is served.
const VERSION_PLACEHOLDER: &str = "__RENKEI_VERSION__";

/// A client file: its path, type and content.
type File = (&'static str, &'static str, &'static [u8]);

/// Every file of the client.
const FILES: [File; 18] = [
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

/// `sw.js` as served: its version placeholder replaced, computed once.
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

/// The client's files.
pub fn routes() -> Router<Arc<App>> {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            if path == SERVICE_WORKER {
                router.route(path, get(|| async { worker() }))
            } else {
                router.route(path, get(move || async move { file(content_type, body) }))
            }
        })
}

fn file(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidate every time: a new server version must not meet an old client.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn worker() -> Response {
    let mut response = file(JS, WORKER.as_slice());
    // Its path gives it the root scope already; said anyway, for a proxy that moves it.
    response.headers_mut().insert(
        HeaderName::from_static("service-worker-allowed"),
        HeaderValue::from_static("/"),
    );
    response
}

/// Headers on every response: scripts only from this server (no inline script, so
/// injected text cannot run), no framing, no MIME sniffing, no referrer to outside links;
/// with built-in TLS, HSTS (browsers then never try plain HTTP for a year).
pub async fn security_headers(State(app): State<Arc<App>>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    if app.config.tls() {
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
