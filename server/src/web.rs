//! The web client (`client-web/`), embedded in the binary so that `renkei` alone serves
//! it (no CDN: it must work on a closed hospital network), and the security headers every
//! response carries.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::App;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the client: its path, type and content.
const FILES: [(&str, &str, &str); 8] = [
    ("/", HTML, include_str!("../../client-web/index.html")),
    ("/app.js", JS, include_str!("../../client-web/app.js")),
    ("/ui.js", JS, include_str!("../../client-web/ui.js")),
    ("/admin.js", JS, include_str!("../../client-web/admin.js")),
    ("/i18n.js", JS, include_str!("../../client-web/i18n.js")),
    ("/app.css", CSS, include_str!("../../client-web/app.css")),
    // The public list of participating facilities (公示).
    (
        "/facilities",
        HTML,
        include_str!("../../client-web/facilities.html"),
    ),
    (
        "/facilities.js",
        JS,
        include_str!("../../client-web/facilities.js"),
    ),
];

/// The client's files.
pub fn routes() -> Router<Arc<App>> {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(path, get(move || async move { file(content_type, body) }))
        })
}

fn file(content_type: &'static str, body: &'static str) -> Response {
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
