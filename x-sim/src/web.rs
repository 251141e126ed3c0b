//! x-sim's HTTP side assembled: the JSON API ([`crate::api`]), the web console
//! ([`crate::console`]) and the firmware server's downloads, behind one access rule.
//!
//! On a loopback address with no token, every request is served, as a local tool is. With a
//! token (always, when the address is not loopback: [`crate::sim::Sim::start`] refuses to
//! listen on one without it), every request must carry it: `Authorization: Bearer TOKEN`, the
//! `x_sim_token` cookie, or `?token=TOKEN`. A page opened with `?token=` gets the cookie and is
//! redirected to the same address without it, so that the token leaves the address bar and the
//! page's own requests (fetch, Server-Sent Events) carry it without knowing it. Firmware
//! downloads are made by devices, which know no token: the platform signs each image path it
//! puts in an OTA notify ([`Signer`]), and a download carrying the signature of its own path is
//! served. Anything else gets 401 with a JSON error naming what was missing.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use x_protocol::SecretString;

use crate::platform::Platform;

/// The cookie a console page keeps the token in.
pub const TOKEN_COOKIE: &str = "x_sim_token";

/// The query parameter a signed firmware URL carries.
pub const SIGNATURE_PARAM: &str = "sig";

/// Signs firmware image paths with a key derived from the HTTP token (HMAC-SHA256), so that
/// devices can download the images named in OTA notifies without knowing the token.
#[derive(Clone)]
pub struct Signer {
    key: Arc<ring::hmac::Key>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// A signer keyed by `token`.
    pub fn new(token: &SecretString) -> Self {
        Self {
            key: Arc::new(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                token.expose().as_bytes(),
            )),
        }
    }

    /// The signature of `path` (`/firmware/...`), as lowercase hex.
    pub fn sign(&self, path: &str) -> String {
        hex::encode(ring::hmac::sign(&self.key, path.as_bytes()).as_ref())
    }

    /// Whether `signature` (hex, either case) is `path`'s, compared in constant time.
    pub fn verify(&self, path: &str, signature: &str) -> bool {
        hex::decode(signature)
            .is_ok_and(|tag| ring::hmac::verify(&self.key, path.as_bytes(), &tag).is_ok())
    }
}

/// Who may use the HTTP side: everyone, or whoever carries the token.
#[derive(Debug, Clone)]
struct Gate {
    token: Option<SecretString>,
    signer: Option<Signer>,
}

/// Where a request carried its token.
#[derive(Debug, PartialEq, Eq)]
enum Carried {
    /// `Authorization: Bearer` or the cookie.
    Header,
    /// `?token=` in the address.
    Query,
}

impl Gate {
    /// Where `request` carries the right token, if it does.
    fn carried(&self, token: &str, headers: &HeaderMap, query: Option<&str>) -> Option<Carried> {
        let matches = |given: &str| constant_time_eq(given.as_bytes(), token.as_bytes());
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == TOKEN_COOKIE)
            .map(|(_, value)| value);
        if bearer.is_some_and(matches) || cookie.is_some_and(matches) {
            return Some(Carried::Header);
        }
        query_param(query, "token")
            .is_some_and(|t| matches(&t))
            .then_some(Carried::Query)
    }

    /// Whether a firmware download carries its own path's signature.
    fn signed(&self, path: &str, query: Option<&str>) -> bool {
        match (&self.signer, query_param(query, SIGNATURE_PARAM)) {
            (Some(signer), Some(sig)) => {
                path.starts_with("/firmware/") && signer.verify(path, &sig)
            }
            _ => false,
        }
    }
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of query parameter `name`, percent-decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Decodes `%XX` escapes and `+` (as a space); malformed escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(high), Some(low)) => {
                // Two hex digits: at most 0xFF.
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                i += 2;
            }
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The address `request` asked for, without its `token` query parameter.
fn without_token(path: &str, query: Option<&str>) -> String {
    let rest: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("token="))
        .collect();
    if rest.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", rest.join("&"))
    }
}

async fn guard(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let Some(token) = gate.token.as_ref().map(SecretString::expose) else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    match gate.carried(token, request.headers(), query.as_deref()) {
        // A page opened with the token in its address: keep it in a cookie instead.
        Some(Carried::Query)
            if request.method() == axum::http::Method::GET
                && !path.starts_with("/api/")
                && !path.starts_with("/firmware/") =>
        {
            let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            let location = without_token(&path, query.as_deref());
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let (Ok(cookie), Ok(location)) = (
                HeaderValue::from_str(&cookie),
                HeaderValue::from_str(&location),
            ) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Some(_) => next.run(request).await,
        None if gate.signed(&path, query.as_deref()) => next.run(request).await,
        None => {
            tracing::info!(target: "x_sim", "HTTP {} {path}: refused, no valid token", request.method());
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"x-sim\"")],
                axum::Json(json!({
                    "error": "this x-sim needs its HTTP token: send `Authorization: Bearer TOKEN`, \
                              or open the console once at /?token=TOKEN"
                })),
            )
                .into_response()
        }
    }
}

/// Everything x-sim serves over HTTP: the API, the console at `/`, and the firmware
/// server's downloads when there is one; with `token`, behind it (see the module docs).
pub fn app(platform: Platform, token: Option<SecretString>) -> Router {
    let signer = token.as_ref().map(Signer::new);
    let gate = Arc::new(Gate { token, signer });
    crate::api::router(platform)
        .merge(crate::console::routes())
        .layer(middleware::from_fn_with_state(gate, guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        let token = SecretString::new("s3cret token".into());
        Gate {
            signer: Some(Signer::new(&token)),
            token: Some(token),
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn the_token_is_taken_from_a_bearer_header_a_cookie_or_the_query() {
        let g = gate();
        let t = "s3cret token";
        let none = HeaderMap::new();
        assert_eq!(
            g.carried(
                t,
                &headers(&[(header::AUTHORIZATION, "Bearer s3cret token")]),
                None
            ),
            Some(Carried::Header)
        );
        assert_eq!(
            g.carried(
                t,
                &headers(&[(header::COOKIE, "a=b; x_sim_token=s3cret token")]),
                None
            ),
            Some(Carried::Header)
        );
        assert_eq!(
            g.carried(t, &none, Some("x=1&token=s3cret%20token")),
            Some(Carried::Query)
        );
        assert_eq!(
            g.carried(t, &none, Some("token=s3cret+token")),
            Some(Carried::Query)
        );
        for wrong in [
            headers(&[(header::AUTHORIZATION, "Bearer s3cret")]),
            headers(&[(header::AUTHORIZATION, "s3cret token")]),
            headers(&[(header::COOKIE, "x_sim_token=s3cret tokens")]),
        ] {
            assert_eq!(g.carried(t, &wrong, Some("token=nope")), None);
        }
        assert_eq!(g.carried(t, &none, None), None);
    }

    #[test]
    fn firmware_paths_are_signed_each_for_itself() {
        let g = gate();
        let signer = g.signer.clone().unwrap();
        let path = "/firmware/AA30C505/default/1.0.2/plug.bin";
        let sig = signer.sign(path);
        assert_eq!(sig.len(), 64);
        assert!(g.signed(path, Some(&format!("sig={sig}"))));
        assert!(g.signed(path, Some(&format!("sig={}", sig.to_uppercase()))));
        assert!(!g.signed(
            "/firmware/AA30C505/default/1.0.3/plug.bin",
            Some(&format!("sig={sig}"))
        ));
        assert!(!g.signed(
            "/api/devices",
            Some(&format!("sig={}", signer.sign("/api/devices")))
        ));
        assert!(!g.signed(path, Some("sig=zz")));
        assert!(!g.signed(path, None));
        // The signature reveals nothing of the token, and Debug shows neither.
        assert!(!format!("{signer:?} {g:?}").contains("s3cret"));
    }

    #[test]
    fn the_token_leaves_the_address_and_the_rest_stays() {
        assert_eq!(without_token("/", Some("token=abc")), "/");
        assert_eq!(without_token("/", Some("a=1&token=abc&b=2")), "/?a=1&b=2");
        assert_eq!(without_token("/x", None), "/x");
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
