//! A tower layer on the gRPC server that counts every call by method and status code
//! and times it.
//!
//! A unary gRPC call's status usually arrives in the trailers, after the body, so the
//! response body is wrapped and the call is recorded when the trailers pass (or at once
//! from the headers of a trailers-only error). A call dropped before its status (the
//! client went away) is recorded as `CANCELLED`.

use super::metrics::GrpcCalls;
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

/// Wraps the gRPC routes in [`GrpcMetrics`].
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    calls: GrpcCalls,
}

impl GrpcMetricsLayer {
    /// A layer recording into `calls`.
    pub fn new(calls: GrpcCalls) -> Self {
        Self { calls }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            calls: self.calls.clone(),
        }
    }
}

/// The gRPC service, counted and timed.
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    calls: GrpcCalls,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = ObservedCall<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = Call {
            calls: Some(self.calls.clone()),
            // Shares the request's bytes: no copy of the path per call.
            path: request.uri().path_and_query().cloned(),
            start: Instant::now(),
            header_code: None,
        };
        ObservedCall {
            inner: self.inner.call(request),
            call: Some(call),
        }
    }
}

/// One call in progress; records itself exactly once, at the latest when dropped.
struct Call {
    calls: Option<GrpcCalls>,
    path: Option<PathAndQuery>,
    start: Instant,
    /// The status of a trailers-only response, which has no trailers to wait for.
    header_code: Option<Code>,
}

impl Call {
    fn finish(mut self, code: Option<Code>) {
        let code = code.or(self.header_code).unwrap_or(Code::Unknown);
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        if let Some(calls) = self.calls.take() {
            let method = self.path.as_ref().map_or("", PathAndQuery::path);
            calls.record(method, code, self.start.elapsed());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = self.header_code.unwrap_or(Code::Cancelled);
        self.record(code);
    }
}

/// The `grpc-status` in headers or trailers, if any.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

pin_project! {
    /// The response future of a counted call.
    pub struct ObservedCall<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for ObservedCall<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<Observed<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        match result {
            Ok(response) => {
                if let Some(call) = call.as_mut() {
                    call.header_code = grpc_status(response.headers());
                }
                Poll::Ready(Ok(response.map(|inner| Observed { inner, call })))
            }
            Err(e) => {
                if let Some(call) = call {
                    call.finish(Some(Code::Unknown));
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project! {
    /// A response body that records its call when the status passes.
    pub struct Observed<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(f)) => f.trailers_ref().map(grpc_status),
            Some(Err(_)) => Some(Some(Code::Unknown)),
            None => Some(None),
        };
        if let Some(code) = code
            && let Some(call) = this.call.take()
        {
            call.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
