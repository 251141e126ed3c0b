//! Fault injection for firmware downloads, and the record of the requests each image got.
//!
//! A [`DownloadFaults`] set on one image ([`Firmware::set_image_faults`]) or on every image
//! ([`Firmware::set_faults`]) changes how `GET` requests are answered: Range ignored, the
//! connection dropped after N body bytes, a body shorter or longer than the image, a delay
//! before every chunk. `HEAD` requests and requests with no faults in force take the normal
//! path through tower-http's `ServeFile`. Faults live in memory only (not in the index).
//!
//! [`Firmware::set_image_faults`]: super::Firmware::set_image_faults
//! [`Firmware::set_faults`]: super::Firmware::set_faults

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use serde::Serialize;

use super::ImageKey;

/// The byte appended to an image by [`DownloadFaults::long_by`].
pub const FILLER: u8 = 0xA5;

/// How many requests are kept per image in its record (the newest).
pub const REQUESTS_PER_IMAGE: usize = 1000;

/// The chunk size a [`DownloadFaults::chunk_delay`] applies to unless told otherwise.
pub const DEFAULT_CHUNK_SIZE: usize = 1024;

/// How long a response that is to drop its connection waits after its last byte, so that
/// the bytes before the cut reach the client before the connection closes.
const DROP_GRACE: Duration = Duration::from_millis(50);

/// How the firmware server misbehaves when answering `GET` for an image. Faults combine:
/// the body is first made shorter ([`short_by`](Self::short_by)) or longer
/// ([`long_by`](Self::long_by)), then the Range of the request is applied to it (unless
/// [`ignore_range`](Self::ignore_range)), then it is sent in delayed chunks
/// ([`chunk_delay`](Self::chunk_delay)) and cut ([`drop_after`](Self::drop_after)).
///
/// ```
/// # use std::time::Duration;
/// # use x_sim::firmware::DownloadFaults;
/// // The next response only: close the connection after 1000 body bytes.
/// let once = DownloadFaults::dropping_after(1000).times(1);
/// // Every response: 200 with the whole image whatever the Range, 10 ms per 256 bytes.
/// let slow = DownloadFaults {
///     ignore_range: true,
///     ..DownloadFaults::delayed(256, Duration::from_millis(10))
/// };
/// # let _ = (once, slow);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadFaults {
    /// Answer 200 with the whole body whatever the request's `Range` says, as a server
    /// without Range support does (no `Accept-Ranges` header either).
    pub ignore_range: bool,
    /// Close the connection after this many bytes of the response's body (counted from the
    /// start of this response's body, not of the image). The headers still announce the
    /// whole body, so the client sees fewer bytes than `Content-Length` says and the
    /// connection closing: a truncated body, a reset. `Some(0)`: the headers and no byte.
    pub drop_after: Option<u64>,
    /// Serve the image without its last `short_by` bytes, as if that were the whole image:
    /// `Content-Length` and `Content-Range` are honest for the shorter body (its MD5 and
    /// size are not the notify's). More than the image's size: an empty body.
    pub short_by: u64,
    /// Serve the image followed by `long_by` bytes of [`FILLER`] (0xA5), as if that were
    /// the whole image: `Content-Length` and `Content-Range` are honest for the longer body.
    pub long_by: u64,
    /// Wait this long before each chunk of [`chunk_size`](Self::chunk_size) bytes of the
    /// body (zero: no delay, the body goes out as it is read).
    pub chunk_delay: Duration,
    /// The size of the chunks [`chunk_delay`](Self::chunk_delay) separates (default
    /// [`DEFAULT_CHUNK_SIZE`]; 0 is taken as 1).
    pub chunk_size: usize,
    /// How many `GET` responses these faults apply to before they are spent (and the image
    /// is served normally again); `None`: every response until they are cleared or
    /// replaced.
    pub responses: Option<u32>,
}

impl Default for DownloadFaults {
    fn default() -> Self {
        Self {
            ignore_range: false,
            drop_after: None,
            short_by: 0,
            long_by: 0,
            chunk_delay: Duration::ZERO,
            chunk_size: DEFAULT_CHUNK_SIZE,
            responses: None,
        }
    }
}

impl DownloadFaults {
    /// 200 with the whole image whatever the `Range` ([`ignore_range`](Self::ignore_range)).
    pub fn ignoring_range() -> Self {
        Self {
            ignore_range: true,
            ..Self::default()
        }
    }

    /// The connection closed after `bytes` body bytes ([`drop_after`](Self::drop_after)).
    pub fn dropping_after(bytes: u64) -> Self {
        Self {
            drop_after: Some(bytes),
            ..Self::default()
        }
    }

    /// The image without its last `bytes` bytes ([`short_by`](Self::short_by)).
    pub fn short_by(bytes: u64) -> Self {
        Self {
            short_by: bytes,
            ..Self::default()
        }
    }

    /// The image with `bytes` filler bytes appended ([`long_by`](Self::long_by)).
    pub fn long_by(bytes: u64) -> Self {
        Self {
            long_by: bytes,
            ..Self::default()
        }
    }

    /// `delay` before every chunk of `chunk_size` bytes
    /// ([`chunk_delay`](Self::chunk_delay)).
    pub fn delayed(chunk_size: usize, delay: Duration) -> Self {
        Self {
            chunk_delay: delay,
            chunk_size,
            ..Self::default()
        }
    }

    /// These faults for the next `responses` `GET` responses only
    /// ([`responses`](Self::responses)).
    #[must_use]
    pub fn times(self, responses: u32) -> Self {
        Self {
            responses: Some(responses),
            ..self
        }
    }

    /// Whether the body must be built here rather than by `ServeFile`.
    fn changes_content(&self) -> bool {
        self.short_by > 0 || self.long_by > 0
    }
}

/// One request for an image, as the firmware server saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadRequest {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The `Range` header as it came (`bytes=1000-`), if there was one.
    pub range: Option<String>,
    /// The status answered (200, 206, 416, ...).
    pub status: u16,
    /// Whether [`DownloadFaults`] applied to the answer.
    pub faulted: bool,
    /// When it arrived (Unix ms).
    pub at_ms: i64,
}

/// The faults in force and the request record, shared by the clones of a `Firmware`.
#[derive(Debug, Default)]
pub(super) struct FaultState {
    every: Option<DownloadFaults>,
    images: BTreeMap<ImageKey, DownloadFaults>,
    requests: BTreeMap<ImageKey, VecDeque<DownloadRequest>>,
}

impl FaultState {
    pub(super) fn set_every(&mut self, faults: Option<DownloadFaults>) {
        self.every = faults;
    }

    pub(super) fn set_image(&mut self, key: ImageKey, faults: Option<DownloadFaults>) {
        match faults {
            Some(f) => {
                self.images.insert(key, f);
            }
            None => {
                self.images.remove(&key);
            }
        }
    }

    pub(super) fn every(&self) -> Option<DownloadFaults> {
        self.every.clone()
    }

    pub(super) fn image(&self, key: &ImageKey) -> Option<DownloadFaults> {
        self.images.get(key).cloned()
    }

    pub(super) fn clear(&mut self) {
        self.every = None;
        self.images.clear();
    }

    /// The faults for one `GET` of the image `key`, counted as used: the image's own, else
    /// those of every image.
    pub(super) fn take(&mut self, key: &ImageKey) -> Option<DownloadFaults> {
        let slot = match self.images.get_mut(key) {
            Some(f) => Some((f, true)),
            None => self.every.as_mut().map(|f| (f, false)),
        };
        let (faults, own) = slot?;
        let taken = faults.clone();
        let spent = match &mut faults.responses {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if spent {
            if own {
                self.images.remove(key);
            } else {
                self.every = None;
            }
        }
        // A count of 0 set by the caller means "no more responses".
        (taken.responses != Some(0)).then_some(taken)
    }

    pub(super) fn record(&mut self, key: ImageKey, request: DownloadRequest) {
        let list = self.requests.entry(key).or_default();
        if list.len() == REQUESTS_PER_IMAGE {
            list.pop_front();
        }
        list.push_back(request);
    }

    pub(super) fn requests(&self, key: &ImageKey) -> Vec<DownloadRequest> {
        self.requests
            .get(key)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(super) fn clear_requests(&mut self) {
        self.requests.clear();
    }
}

/// A single byte range of a body of `len` bytes, as RFC 9110 reads `Range: bytes=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// No usable Range (none, another unit, several ranges, bad syntax): the whole body.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// A range that starts at or after the end of the body.
    Unsatisfiable,
}

fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(range) = range else {
        return Wanted::Whole;
    };
    let Some(spec) = range
        .trim()
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .and_then(|_| range.trim().get(6..))
    else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part(len.saturating_sub(n), len - 1)
            }
        }
        (false, Some(start), None) if last.trim().is_empty() => {
            if start < len {
                Wanted::Part(start, len - 1)
            } else {
                Wanted::Unsatisfiable
            }
        }
        (false, Some(start), Some(end)) if start <= end => {
            if start < len {
                Wanted::Part(start, end.min(len - 1))
            } else {
                Wanted::Unsatisfiable
            }
        }
        _ => Wanted::Whole,
    }
}

/// The answer to a `GET` of the image file `path` under `faults`: through `ServeFile`
/// (with the Range taken out when it is to be ignored) when the content stays the image's,
/// else built here from the changed content; then delayed and cut as the faults say.
pub(super) async fn faulted_response(
    path: &Path,
    parts: &Parts,
    faults: &DownloadFaults,
) -> std::io::Result<Response> {
    let response = if faults.changes_content() {
        changed_content(path, parts, faults).await?
    } else {
        let mut request = axum::extract::Request::new(Body::empty());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.headers_mut() = parts.headers.clone();
        if faults.ignore_range {
            request.headers_mut().remove(RANGE);
        }
        let mut response = tower_http::services::ServeFile::new(path)
            .try_call(request)
            .await?
            .map(Body::new);
        if faults.ignore_range {
            response.headers_mut().remove(ACCEPT_RANGES);
        }
        response
    };
    let shaped = faults.drop_after.is_some() || !faults.chunk_delay.is_zero();
    Ok(if shaped {
        response.map(|body| {
            Body::new(Shaped {
                inner: body,
                pending: Bytes::new(),
                inner_done: false,
                sent: 0,
                drop_after: faults.drop_after,
                chunk_size: faults.chunk_size.max(1),
                delay: faults.chunk_delay,
                sleep: None,
                dropping: None,
            })
        })
    } else {
        response
    })
}

/// A response whose body is the image made shorter or longer, with the request's Range
/// applied to that body (unless ignored).
async fn changed_content(
    path: &Path,
    parts: &Parts,
    faults: &DownloadFaults,
) -> std::io::Result<Response> {
    let mut content = tokio::fs::read(path).await?;
    let keep =
        usize::try_from(faults.short_by).map_or(0, |short| content.len().saturating_sub(short));
    content.truncate(keep);
    let extra = usize::try_from(faults.long_by).unwrap_or(usize::MAX);
    content.resize(content.len().saturating_add(extra), FILLER);
    let len = content.len() as u64;
    let range = if faults.ignore_range {
        None
    } else {
        parts.headers.get(RANGE).and_then(|v| v.to_str().ok())
    };
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if !faults.ignore_range {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let (status, body) = match wanted(range, len) {
        Wanted::Whole => (StatusCode::OK, Bytes::from(content)),
        Wanted::Part(start, end) => {
            let value = format!("bytes {start}-{end}/{len}");
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(CONTENT_RANGE, v);
            }
            // Both ends are below `len`, which is the length of a Vec: they fit a usize.
            let from = usize::try_from(start).unwrap_or(usize::MAX);
            let to = usize::try_from(end).unwrap_or(usize::MAX);
            let body = Bytes::from(content).slice(from..=to);
            (StatusCode::PARTIAL_CONTENT, body)
        }
        Wanted::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(CONTENT_RANGE, v);
            }
            (StatusCode::RANGE_NOT_SATISFIABLE, Bytes::new())
        }
    };
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    *response.status_mut() = status;
    *response.body_mut() = Body::from(body);
    Ok(response)
}

/// A response body sent in delayed chunks and cut after a number of bytes (then an error,
/// on which hyper closes the connection).
struct Shaped {
    inner: Body,
    /// Bytes read from `inner` and not yet sent.
    pending: Bytes,
    inner_done: bool,
    sent: u64,
    drop_after: Option<u64>,
    chunk_size: usize,
    delay: Duration,
    /// The delay before the next chunk, while it runs.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Armed once the cut is reached: when it fires, the body fails.
    dropping: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Shaped {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.dropping.is_none() && this.drop_after.is_some_and(|limit| this.sent >= limit) {
            this.dropping = Some(Box::pin(tokio::time::sleep(DROP_GRACE)));
        }
        if let Some(grace) = &mut this.dropping {
            return match grace.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    tracing::info!(
                        target: "x_sim",
                        "firmware download cut after {} body bytes (fault injection)",
                        this.sent
                    );
                    Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "firmware download cut (fault injection)",
                    ))))
                }
            };
        }
        while this.pending.is_empty() {
            if this.inner_done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.inner_done = true,
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.pending = data;
                    }
                }
            }
        }
        if !this.delay.is_zero() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let mut take = this.pending.len();
        if !this.delay.is_zero() {
            take = take.min(this.chunk_size);
        }
        if let Some(limit) = this.drop_after {
            let left = usize::try_from(limit.saturating_sub(this.sent)).unwrap_or(usize::MAX);
            take = take.min(left);
        }
        let chunk = this.pending.split_to(take);
        this.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

#[cfg(test)]
mod tests {
    use super::{Wanted, wanted};

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-"), 10), Wanted::Part(0, 9));
        assert_eq!(wanted(Some("bytes=4-"), 10), Wanted::Part(4, 9));
        assert_eq!(wanted(Some("Bytes=2-5"), 10), Wanted::Part(2, 5));
        assert_eq!(wanted(Some("bytes=2-50"), 10), Wanted::Part(2, 9));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7, 9));
        assert_eq!(wanted(Some("bytes=-30"), 10), Wanted::Part(0, 9));
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        for ignored in [
            "bytes=5-2",
            "bytes=1-2,4-5",
            "items=0-",
            "bytes=x-",
            "bytes=",
            "bytes=-",
            "bytes=+1-",
            "",
            "b",
        ] {
            assert_eq!(wanted(Some(ignored), 10), Wanted::Whole, "{ignored}");
        }
    }
}
