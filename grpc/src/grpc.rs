//! The gRPC protocol over HTTP/2, as little of it as the server needs: strict request checks,
//! the unary request body (exactly one length-prefixed message, under a size limit and a
//! shared memory budget) and the answer (headers, one message, trailers; or trailers only for
//! an error status).
//!
//! Strictness (each a gRPC status or HTTP status, never a silent acceptance):
//! - a method other than POST: HTTP 405;
//! - a `content-type` other than `application/grpc` or `application/grpc+proto` (optionally
//!   with `;` parameters): HTTP 415, as the gRPC spec asks of servers;
//! - a compressed message (no `grpc-encoding` is accepted): `UNIMPLEMENTED`;
//! - a unary call without a message, with a message cut short, or with a second message:
//!   `INTERNAL` (as grpc-java answers);
//! - a message over `--grpc-recv-max-size`: `RESOURCE_EXHAUSTED` (as grpc-go answers);
//! - a message that does not fit the request memory budget now: `RESOURCE_EXHAUSTED`;
//! - a `grpc-timeout` ([`timeout`]) bounds the wait for the body and the store operations of
//!   a dispatch on the blocking pool (src/service.rs).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

const GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// What a request's `content-type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `application/grpc` or `application/grpc+proto`.
    Grpc,
    /// Anything else (or none).
    Unsupported,
}

/// Classify a request's `content-type`.
pub fn content_type(headers: &HeaderMap) -> ContentType {
    let Some(v) = headers.get(CONTENT_TYPE) else { return ContentType::Unsupported };
    let v = v.as_bytes();
    let base = match v.iter().position(|&b| b == b';') {
        Some(i) => &v[..i],
        None => v,
    };
    if base.eq_ignore_ascii_case(b"application/grpc") || base.eq_ignore_ascii_case(b"application/grpc+proto") {
        ContentType::Grpc
    } else {
        ContentType::Unsupported
    }
}

/// Answers up to this size are handed to h2 in DATA frames of at most [`SMALL_FRAME`]
/// bytes. h2 copies frames smaller than its chain threshold into its write buffer and keeps
/// encoding, so the headers, the message and the trailers leave in one write; a larger frame
/// is written from its own buffer and the connection flushes it before encoding the trailers,
/// which costs a second write (and the peer a second wakeup) per call.
pub const SMALL_ANSWER: usize = 16 << 10;

/// The DATA frame size for small answers: below h2's chain threshold for connections without
/// vectored writes (1024 bytes; the server's connections report none, see src/server.rs).
pub const SMALL_FRAME: usize = 1023;

/// The call's `grpc-timeout` (1 to 8 digits and a unit: `H`, `M`, `S`, `m`, `u`, `n`);
/// `None` when absent or malformed.
pub fn timeout(headers: &HeaderMap) -> Option<std::time::Duration> {
    let v = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    use std::time::Duration;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The response body: one message and trailers in memory, or a streaming body (the health
/// service's `Watch`).
pub enum ResponseBody {
    /// Frames still to send.
    Unary {
        /// The length-prefixed message (what is left of it).
        data: Option<Bytes>,
        /// `grpc-status: 0`.
        trailers: Option<HeaderMap>,
    },
    /// A tonic body.
    Stream(tonic::body::Body),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            ResponseBody::Unary { data, trailers } => {
                if let Some(d) = data {
                    let chunk = if d.len() <= SMALL_ANSWER && d.len() > SMALL_FRAME {
                        d.split_to(SMALL_FRAME)
                    } else {
                        std::mem::take(d)
                    };
                    if d.is_empty() {
                        *data = None;
                    }
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                } else if let Some(t) = trailers.take() {
                    Poll::Ready(Some(Ok(Frame::trailers(t))))
                } else {
                    Poll::Ready(None)
                }
            }
            ResponseBody::Stream(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Unary { data, trailers } => data.is_none() && trailers.is_none(),
            ResponseBody::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // Never exact: hyper would add a content-length header, which gRPC does not use.
        SizeHint::default()
    }
}

/// A successful unary answer: headers, the message, `grpc-status: 0`.
pub fn answer(message: &[u8]) -> Response<ResponseBody> {
    let framed = frame(message);
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut r = Response::new(ResponseBody::Unary { data: Some(framed), trailers: Some(trailers) });
    r.headers_mut().insert(CONTENT_TYPE, GRPC);
    r
}

/// An error status as a trailers-only answer (`grpc-status`, `grpc-message`, metadata).
pub fn error(status: &Status) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::Unary { data: None, trailers: None });
    r.headers_mut().insert(CONTENT_TYPE, GRPC);
    if status.add_header(r.headers_mut()).is_err() {
        r.headers_mut().insert("grpc-status", HeaderValue::from_static("13"));
    }
    r
}

/// A non-gRPC refusal: an HTTP status with a gRPC status in the headers for gRPC clients.
pub fn http_error(code: StatusCode, status: &Status) -> Response<ResponseBody> {
    let mut r = error(status);
    *r.status_mut() = code;
    r.headers_mut().remove(CONTENT_TYPE);
    r
}

/// Bytes of request messages held by all calls together.
#[derive(Clone)]
pub struct Budget(Arc<Semaphore>, usize);

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        let bytes = bytes.min(Semaphore::MAX_PERMITS);
        Budget(Arc::new(Semaphore::new(bytes)), bytes)
    }

    /// Bytes not held by any call now.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    /// The whole budget.
    pub fn limit(&self) -> usize {
        self.1
    }

    /// Bytes held by calls now.
    pub fn in_use(&self) -> usize {
        self.1.saturating_sub(self.available())
    }
}

/// The message of a call refused because the memory budget is in use (an overload, not a
/// request over a limit).
pub const BUDGET_IN_USE: &str = "the server's memory budget for request messages is in use; retry later";

/// A received request message and its share of the budget (released on drop).
pub struct Message {
    /// The message bytes (without the 5-byte prefix).
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// Read a unary request body: exactly one uncompressed message of at most `max` bytes,
/// reserving its declared length from `budget` before buffering it. The whole message of a
/// typical request arrives in one DATA frame and is taken from it without a copy.
pub async fn read_unary<B>(body: &mut B, max: usize, budget: &Budget) -> Result<Message, Status>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut prefix = [0u8; 5];
    let mut have = 0usize;
    let mut len: Option<usize> = None;
    let mut buf = BytesMut::new();
    let mut message: Option<Bytes> = None;
    let mut held = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::cancelled(format!("request body: {e}")))?;
        let Ok(mut data) = frame.into_data() else { continue };
        while data.has_remaining() {
            if message.is_some() {
                return Err(Status::internal("a unary call carried more than one request message"));
            }
            let want = match len {
                Some(l) => l,
                None => {
                    let n = (5 - have).min(data.len());
                    prefix[have..have + n].copy_from_slice(&data[..n]);
                    data.advance(n);
                    have += n;
                    if have < 5 {
                        continue;
                    }
                    match prefix[0] {
                        0 => {}
                        1 => {
                            return Err(Status::unimplemented(
                                "compressed messages are not accepted (grpc-encoding: identity only)",
                            ))
                        }
                        f => return Err(Status::internal(format!("invalid gRPC message flag {f}"))),
                    }
                    let l = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
                    if l > max {
                        return Err(Status::resource_exhausted(format!(
                            "request message larger than max ({l} vs. {max})"
                        )));
                    }
                    if l > 0 {
                        match budget.0.clone().try_acquire_many_owned(l as u32) {
                            Ok(p) => held = Some(p),
                            Err(_) => return Err(Status::resource_exhausted(BUDGET_IN_USE)),
                        }
                    }
                    len = Some(l);
                    if data.len() >= l {
                        message = Some(data.split_to(l));
                        continue;
                    }
                    buf.reserve(l);
                    l
                }
            };
            let n = (want - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..n]);
            data.advance(n);
            if buf.len() == want {
                message = Some(std::mem::take(&mut buf).freeze());
            }
        }
    }
    match message {
        Some(bytes) => Ok(Message { bytes, _held: held }),
        None if have == 0 => Err(Status::internal("a unary call ended without a request message")),
        None => Err(Status::internal("the request ended inside its message")),
    }
}

/// `prefix + message` as one gRPC message frame (for handing a read request on to tonic).
pub fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    type Frames = tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, String>>>;

    fn body(chunks: Vec<&[u8]>) -> StreamBody<Frames> {
        let frames: Vec<Result<Frame<Bytes>, String>> =
            chunks.into_iter().map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        StreamBody::new(tokio_stream::iter(frames))
    }

    async fn read(chunks: Vec<&[u8]>, max: usize, budget: &Budget) -> Result<Vec<u8>, Status> {
        read_unary(&mut body(chunks), max, budget).await.map(|m| m.bytes.to_vec())
    }

    #[tokio::test]
    async fn one_message_in_any_split() {
        let b = Budget::new(1 << 20);
        let framed = frame(b"hello world");
        assert_eq!(read(vec![&framed], 100, &b).await.unwrap(), b"hello world");
        for cut in 1..framed.len() {
            let (x, y) = framed.split_at(cut);
            assert_eq!(read(vec![x, y], 100, &b).await.unwrap(), b"hello world", "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = framed.chunks(1).collect();
        assert_eq!(read(bytes, 100, &b).await.unwrap(), b"hello world");
        assert_eq!(read(vec![&frame(b"")], 100, &b).await.unwrap(), b"", "an empty message is one message");
        assert_eq!(b.available(), 1 << 20, "every share is returned");
    }

    #[tokio::test]
    async fn anything_but_one_message_is_refused() {
        let b = Budget::new(1 << 20);
        let one = frame(b"abc");
        let two = [one.to_vec(), one.to_vec()].concat();
        let big = frame(&[0; 101]);
        let cases: Vec<(Vec<&[u8]>, tonic::Code, &str)> = vec![
            (vec![], tonic::Code::Internal, "without a request message"),
            (vec![&two], tonic::Code::Internal, "more than one"),
            (vec![&one, &one], tonic::Code::Internal, "more than one"),
            (vec![&one[..6]], tonic::Code::Internal, "inside its message"),
            (vec![&one[..3]], tonic::Code::Internal, "inside its message"),
            (vec![&[1, 0, 0, 0, 1, 7]], tonic::Code::Unimplemented, "compressed"),
            (vec![&[9, 0, 0, 0, 0]], tonic::Code::Internal, "flag"),
            (vec![&big], tonic::Code::ResourceExhausted, "larger than max (101 vs. 100)"),
        ];
        for (chunks, code, needle) in cases {
            let s = read(chunks.clone(), 100, &b).await.unwrap_err();
            assert_eq!(s.code(), code, "{chunks:?}: {s:?}");
            assert!(s.message().contains(needle), "{chunks:?}: {}", s.message());
        }
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_released() {
        let b = Budget::new(100);
        let held = read_unary(&mut body(vec![&frame(&[1; 60])]), 100, &b).await.unwrap();
        assert_eq!(b.available(), 40);
        let s = read(vec![&frame(&[2; 50])], 100, &b).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("memory budget"), "{s:?}");
        drop(held);
        assert_eq!(read(vec![&frame(&[2; 50])], 100, &b).await.unwrap().len(), 50);
        assert_eq!(b.available(), 100);
    }

    #[tokio::test]
    async fn small_answers_leave_in_small_frames_large_ones_whole() {
        for (len, most_frames) in
            [(0usize, 1usize), (1018, 1), (1019, 2), (5000, 5), (SMALL_ANSWER - 5, 17), (40_000, 1)]
        {
            let message: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut body = answer(&message).into_body();
            let mut data = Vec::new();
            let mut frames = 0;
            let mut trailers = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.unwrap();
                match frame.into_data() {
                    Ok(d) => {
                        frames += 1;
                        assert!(len + 5 > SMALL_ANSWER || d.len() <= SMALL_FRAME, "{len}: a frame of {}", d.len());
                        data.extend_from_slice(&d);
                    }
                    Err(f) => trailers = f.into_trailers().ok(),
                }
            }
            assert!(body.is_end_stream());
            assert_eq!(&data[5..], &message[..], "{len}");
            assert_eq!(u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize, len);
            assert!(frames <= most_frames, "{len}: {frames} frames");
            assert_eq!(trailers.unwrap().get("grpc-status").unwrap(), "0");
        }
    }

    #[test]
    fn grpc_timeouts() {
        use std::time::Duration;
        let t = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            timeout(&h)
        };
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "100", "123456789m", "1x", "-1m", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        assert_eq!(timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn content_types() {
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            content_type(&h)
        };
        assert_eq!(ct("application/grpc"), ContentType::Grpc);
        assert_eq!(ct("application/grpc+proto"), ContentType::Grpc);
        assert_eq!(ct("application/grpc; charset=utf-8"), ContentType::Grpc);
        for bad in ["application/json", "application/grpc+json", "text/plain", "application/grpcx", ""] {
            assert_eq!(ct(bad), ContentType::Unsupported, "{bad}");
        }
        assert_eq!(content_type(&HeaderMap::new()), ContentType::Unsupported);
    }
}
