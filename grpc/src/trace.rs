//! The W3C trace id of a call, and of the dispatch running on this thread.
//!
//! A call's trace id is the trace-id field of its `traceparent` metadata (what the gateway's
//! otelgrpc client sends; a value that is not a valid `traceparent`, or more than one, is
//! ignored). Without one, a `Dispatch` call's trace id is that of the Object's own
//! `traceparent` request header, as the library reads it for its log lines.
//!
//! The host callbacks have no request argument (`trigger_event(name, payload)`), so the
//! service sets the call's [`CallTrace`] on the thread that runs the dispatch, for exactly the
//! time of the dispatch ([`with_call`]): inline on an async worker or on a blocking pool
//! thread alike. Events the middleware fires and the lines the server logs meanwhile take the
//! id from there ([`current_trace_id`]).

use bytes::Bytes;
use http::HeaderMap;
use std::cell::RefCell;

/// A trace id: 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 32]);

impl TraceId {
    /// The trace id of a `traceparent` value, `None` when it is not a valid one.
    pub fn parse(traceparent: &str) -> Option<TraceId> {
        let id = coprocess::context::traceparent_trace_id(traceparent)?;
        Some(TraceId(id.as_bytes().try_into().ok()?))
    }

    /// The trace id of a call's `traceparent` metadata: exactly one valid value.
    pub fn from_metadata(headers: &HeaderMap) -> Option<TraceId> {
        let mut values = headers.get_all("traceparent").iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        TraceId::parse(first.to_str().ok()?)
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        // Only ever built from a validated trace id (ASCII hex).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call's trace id comes from: its metadata, else the Object it carries.
#[derive(Clone, Default)]
pub struct CallTrace {
    id: Option<TraceId>,
    object: Option<Bytes>,
}

impl CallTrace {
    /// A call with the trace id of its metadata (if any).
    pub fn new(id: Option<TraceId>) -> Self {
        CallTrace { id, object: None }
    }

    /// A `Dispatch` call: without a metadata trace id, the Object's `traceparent` header is
    /// read when the id is asked for (only then: an event or a log line).
    pub fn dispatch(id: Option<TraceId>, object: &Bytes) -> Self {
        CallTrace { id, object: if id.is_none() { Some(object.clone()) } else { None } }
    }

    /// The id from the metadata only (what the server passes to `Runtime::dispatch_traced`:
    /// the library reads the Object's header itself).
    pub fn metadata_id(&self) -> Option<TraceId> {
        self.id
    }

    /// The call's trace id.
    pub fn trace_id(&self) -> Option<TraceId> {
        if self.id.is_some() {
            return self.id;
        }
        let bytes = self.object.as_ref()?;
        let scratch = coprocess::Scratch::new();
        let view = coprocess::ObjectView::new(bytes, &scratch).ok()?;
        TraceId::parse(view.header("traceparent")?)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<CallTrace>> = const { RefCell::new(None) };
}

/// Run `f` (a dispatch) with `call` as this thread's current call; the previous one (none,
/// outside a dispatch) is restored afterwards, also when `f` panics.
pub fn with_call<T>(call: CallTrace, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<CallTrace>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|c| c.replace(Some(call)));
    let _restore = Restore(previous);
    f()
}

/// The trace id of the call being dispatched on this thread, if any.
pub fn current_trace_id() -> Option<TraceId> {
    CURRENT.try_with(|c| c.borrow().as_ref().and_then(CallTrace::trace_id)).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn metadata_needs_exactly_one_valid_traceparent() {
        let tp = format!("00-{ID}-00f067aa0ba902b7-01");
        let mut h = HeaderMap::new();
        assert_eq!(TraceId::from_metadata(&h), None);
        h.insert("traceparent", HeaderValue::from_str(&tp).unwrap());
        assert_eq!(TraceId::from_metadata(&h).unwrap().as_str(), ID);
        h.append("traceparent", HeaderValue::from_str(&tp).unwrap());
        assert_eq!(TraceId::from_metadata(&h), None, "two values");
        for bad in [
            format!("00-{}-00f067aa0ba902b7-01", ID.to_uppercase()),
            format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)),
            format!("ff-{ID}-00f067aa0ba902b7-01"),
            "garbage".to_owned(),
        ] {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_str(&bad).unwrap());
            assert_eq!(TraceId::from_metadata(&h), None, "{bad}");
        }
    }

    #[test]
    fn the_current_call_is_set_for_the_dispatch_only() {
        let object = Bytes::from(
            coprocess::testing::ObjectBuilder::new(coprocess::HookType::Pre, "X")
                .header("traceparent", &format!("00-{ID}-00f067aa0ba902b7-01"))
                .encode(),
        );
        let other = TraceId::parse("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
        assert_eq!(current_trace_id(), None);
        with_call(CallTrace::dispatch(None, &object), || {
            assert_eq!(current_trace_id().unwrap().as_str(), ID, "from the Object's header");
            with_call(CallTrace::new(other), || assert_eq!(current_trace_id(), other));
            assert_eq!(current_trace_id().unwrap().as_str(), ID, "restored");
        });
        assert_eq!(current_trace_id(), None);
        with_call(CallTrace::dispatch(other, &object), || assert_eq!(current_trace_id(), other, "metadata wins"));
        let _ = std::panic::catch_unwind(|| with_call(CallTrace::new(other), || panic!("on purpose")));
        assert_eq!(current_trace_id(), None, "cleared after a panic");
        with_call(CallTrace::dispatch(None, &Bytes::from_static(b"\xff\xff")), || {
            assert_eq!(current_trace_id(), None, "bytes that are not an Object")
        });
    }
}
