//! Accepting connections: one task per connection serving HTTP/1.1 with WebSocket
//! upgrades, a deadline for the request head (a client sending a byte now and then —
//! slowloris — is cut off), the client's address for the handlers, and a graceful stop:
//! no new connections, in-flight requests finished, idle keep-alive connections closed.
//! (`axum::serve` has no deadline for request heads: it gives hyper no timer.) Request
//! bodies get theirs from a layer of the router ([`time_bodies`]).

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;

use crate::app::App;

/// Serves `router` on `listener` until `shutdown`, then waits for its connections to
/// finish their requests. Upgraded WebSockets are not connections any more: their tasks
/// stop on their own (`App::sockets`).
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { router.call(request).await }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let stopping = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    // Finish the request in flight, then close (an idle one at once).
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// Bytes a second a request body must keep up beyond its first `RENKEI_BODY_TIMEOUT_SECONDS`:
/// each 16 KiB received extends its deadline by a second (as Apache's `mod_reqtimeout`
/// `MinRate`), so that a 20 MiB photo on a 1 Mbit/s line arrives, while a body that
/// stalls, or trickles a byte now and then, is cut off.
const MIN_BODY_RATE: f64 = 16.0 * 1024.0;

/// Gives every request's body a deadline (a layer of the router): hyper's deadline covers
/// heads only, so a client could send a head and then hold the connection open with a
/// body that never comes. Past the deadline the body fails, the request is answered 408
/// and the connection closed.
pub async fn time_bodies(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let timeout = Duration::from_secs(u64::from(app.config.limits.body_timeout_seconds));
    let timed_out = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        axum::body::Body::new(TimedBody {
            inner,
            timeout,
            clock: None,
            received: 0,
            timed_out: Arc::clone(&timed_out),
        })
    });
    let response = next.run(request).await;
    if !timed_out.load(Ordering::Relaxed) {
        return response;
    }
    tracing::debug!("request body too slow: cut off");
    let mut refused = crate::http::HttpError::new(
        StatusCode::REQUEST_TIMEOUT,
        renkei_protocol::ErrorCode::BadRequest,
        "the request's body came too slowly",
    )
    .into_response();
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refused
}

/// A request body with a deadline: the time allowed, plus a second per [`MIN_BODY_RATE`]
/// bytes received, counted from the first read (a handler that waits before reading does
/// not spend the client's time).
struct TimedBody {
    inner: axum::body::Body,
    timeout: Duration,
    /// When reading started, and the timer of the deadline; set at the first read.
    clock: Option<(tokio::time::Instant, Pin<Box<tokio::time::Sleep>>)>,
    /// Bytes received so far.
    received: u64,
    /// Set when the deadline passed, for [`time_bodies`] to answer 408.
    timed_out: Arc<AtomicBool>,
}

impl hyper::body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let timeout = this.timeout;
        let (started, timer) = this.clock.get_or_insert_with(|| {
            let now = tokio::time::Instant::now();
            (now, Box::pin(tokio::time::sleep_until(now + timeout)))
        });
        // What has arrived is read, even late: only waiting for the client is timed.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                this.received += data.map_or(0, |d| d.len() as u64);
            }
            return Poll::Ready(frame);
        }
        let earned = Duration::from_secs_f64(this.received as f64 / MIN_BODY_RATE);
        let deadline = *started + timeout + earned;
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new("request body timed out"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
