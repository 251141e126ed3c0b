//! `GET /api/stream`: the platform's live feed ([`crate::platform::live`]) as Server-Sent
//! Events, for the console and for `curl -N`.
//!
//! One `message` event per message each way, one `violation` event per rule broken, and a
//! `lagged` event (`{"missed": N}`) when the client fell so far behind that the feed dropped
//! events for it; a comment line every [`KEEP_ALIVE`] keeps idle connections open. The body
//! is written by hand over the broadcast receiver (`http-body` is already a dependency), so
//! that no stream crate is needed; a client that reads slowly only ever slows itself.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::platform::{LiveEvent, Platform};

/// How often an idle stream sends a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Which events a client asked for: `?device=PRODUCT/NODE` or all.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    device: Option<(String, String)>,
}

impl Filter {
    fn parse(query: &HashMap<String, String>) -> Result<Self, String> {
        if let Some(name) = query.keys().find(|k| k.as_str() != "device") {
            return Err(format!(
                "?{name}: unknown parameter (the stream takes ?device=PRODUCT/NODE)"
            ));
        }
        let device = match query.get("device") {
            None => None,
            Some(d) => match d.split_once('/') {
                Some((p, n)) if !p.is_empty() && !n.is_empty() && !n.contains('/') => {
                    Some((p.to_owned(), n.to_owned()))
                }
                _ => {
                    return Err(format!("?device: expected PRODUCT/NODE, got {d:?}"));
                }
            },
        };
        Ok(Self { device })
    }

    fn wants(&self, event: &LiveEvent) -> bool {
        match (&self.device, &event.device) {
            (None, _) => true,
            (Some((p, n)), Some(d)) => d.product_id.as_str() == p && d.node_eui.as_str() == n,
            (Some(_), None) => false,
        }
    }
}

/// One SSE event: `event: NAME` and its JSON on one `data:` line (JSON text has no raw
/// newlines).
fn sse(name: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The handler of `GET /api/stream`.
pub(crate) async fn stream(
    State(p): State<Platform>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let filter = match Filter::parse(&query) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": e }))).into_response();
        }
    };
    if let Some((product, node)) = &filter.device
        && p.identity(product, node).is_none()
    {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": format!("device {product}/{node} is not registered") })),
        )
            .into_response();
    }
    let rx = p.live().subscribe();
    // A small queue to the connection: when the client reads slowly it fills, the pump
    // waits, and the broadcast receiver (not the platform) counts what it misses.
    let (tx, body) = mpsc::channel::<Bytes>(16);
    tokio::spawn(pump(rx, tx, filter));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::new(EventBody { rx: body }),
    )
        .into_response()
}

/// Moves events from the feed to one connection until the connection closes.
async fn pump(mut rx: broadcast::Receiver<LiveEvent>, tx: mpsc::Sender<Bytes>, filter: Filter) {
    // The first bytes go out at once, so that the client knows the stream is open.
    if tx
        .send(Bytes::from_static(b": x-sim live stream\n\n"))
        .await
        .is_err()
    {
        return;
    }
    let mut idle = tokio::time::interval(KEEP_ALIVE);
    idle.tick().await;
    loop {
        let chunk = tokio::select! {
            received = rx.recv() => match received {
                Ok(event) if filter.wants(&event) => sse(event.kind.name(), &event.data),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    sse("lagged", &json!({ "missed": missed }))
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = idle.tick() => Bytes::from_static(b": keep-alive\n\n"),
            () = tx.closed() => return,
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
    }
}

/// The response body: whatever the pump queued.
struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn filters_parse_or_name_what_is_wrong() {
        assert_eq!(Filter::parse(&q(&[])), Ok(Filter { device: None }));
        assert_eq!(
            Filter::parse(&q(&[("device", "p1/n1")])),
            Ok(Filter {
                device: Some(("p1".into(), "n1".into()))
            })
        );
        for bad in ["p1", "/n1", "p1/", "p1/n1/x"] {
            let e = Filter::parse(&q(&[("device", bad)])).unwrap_err();
            assert!(e.starts_with("?device:"), "{e}");
        }
        let e = Filter::parse(&q(&[("devices", "p1/n1")])).unwrap_err();
        assert!(e.starts_with("?devices: unknown"), "{e}");
    }

    #[test]
    fn an_event_is_one_sse_block() {
        let b = sse("message", &json!({"a": "x\ny"}));
        assert_eq!(&b[..], b"event: message\ndata: {\"a\":\"x\\ny\"}\n\n");
    }
}
