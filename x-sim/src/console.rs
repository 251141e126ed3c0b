//! The web console served at `/`: one page (plain HTML, CSS and JavaScript, built into the
//! binary) that shows products and devices, a device's properties, live messages and
//! violations, forms generated from its thing model for every command, a chart of a numeric
//! property, and firmware and OTA tasks. It holds no platform logic: everything it shows or
//! does goes through the documented HTTP API ([`crate::api`]) and its live stream
//! (`GET /api/stream`).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page.
const INDEX: &str = include_str!("console/index.html");
/// Its style sheet.
const STYLE: &str = include_str!("console/console.css");
/// Its script.
const SCRIPT: &str = include_str!("console/console.js");

/// One built-in asset, never cached (the binary may change under the same address).
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The console's routes: `/`, `/console.css` and `/console.js`.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
}
