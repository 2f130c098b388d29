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

const INDEX: &str = include_str!("../../client-web/index.html");
const APP_JS: &str = include_str!("../../client-web/app.js");
const I18N_JS: &str = include_str!("../../client-web/i18n.js");
const UI_JS: &str = include_str!("../../client-web/ui.js");
const ADMIN_JS: &str = include_str!("../../client-web/admin.js");
const APP_CSS: &str = include_str!("../../client-web/app.css");
const FACILITIES: &str = include_str!("../../client-web/facilities.html");
const FACILITIES_JS: &str = include_str!("../../client-web/facilities.js");

/// The client's files.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/i18n.js",
            get(|| async { file("text/javascript; charset=utf-8", I18N_JS) }),
        )
        .route(
            "/ui.js",
            get(|| async { file("text/javascript; charset=utf-8", UI_JS) }),
        )
        .route(
            "/admin.js",
            get(|| async { file("text/javascript; charset=utf-8", ADMIN_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { file("text/css; charset=utf-8", APP_CSS) }),
        )
        // The public list of participating facilities (公示).
        .route(
            "/facilities",
            get(|| async { file("text/html; charset=utf-8", FACILITIES) }),
        )
        .route(
            "/facilities.js",
            get(|| async { file("text/javascript; charset=utf-8", FACILITIES_JS) }),
        )
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
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
