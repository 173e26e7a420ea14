//! What answers on the listening socket: the API router once this process is the writer, a
//! standby's answers before that.
//!
//! The socket is bound first, so a standby answers health checks while it waits for the
//! writer lease; the router is swapped in when the lease is taken. This sits in front of
//! every request, payments included, so it is a plain service rather than a router of its own
//! (a router's fallback clones a boxed service and boxes its future per request): one read
//! lock and one `Arc` clone per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Service, ServiceExt as _};
use wallet_api::http::problem::Problem;

/// The service behind the listener; clones share the one slot.
#[derive(Clone, Default)]
pub(crate) struct Front {
    active: Arc<RwLock<Option<Router>>>,
}

impl Front {
    /// A front that answers as a standby until [`Front::activate`].
    pub(crate) fn standby() -> Self {
        Self::default()
    }

    /// Serves `router` from now on.
    pub(crate) fn activate(&self, router: Router) {
        *self
            .active
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(router);
    }

    /// Drops the router (and the handles it holds, such as the committer's) and answers as a
    /// standby again.
    pub(crate) fn deactivate(&self) {
        *self
            .active
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    fn current(&self) -> Option<Router> {
        // Nothing panics while holding the lock, and a poisoned slot still holds a router.
        self.active
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.current() {
            Some(router) => Box::pin(router.oneshot(request)),
            None => Box::pin(std::future::ready(Ok(standby_answer(&request)))),
        }
    }
}

/// A standby is healthy but not ready: `/healthz` answers 200, everything else 503, so a load
/// balancer sends traffic to the writer.
fn standby_answer(request: &Request) -> Response {
    if request.uri().path() == "/healthz" {
        return axum::Json(serde_json::json!({"status": "ok", "role": "standby"})).into_response();
    }
    Problem::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "standby",
        "Standby",
        "this process is a standby: another one holds the writer lease; send requests to it",
    )
    .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn answer(front: &Front, path: &str) -> (StatusCode, String) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = front.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_standby_is_healthy_but_refuses_the_api_until_activated_and_after() {
        let front = Front::standby();
        let (status, body) = answer(&front, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"standby\""), "{body}");
        let (status, body) = answer(&front, "/v1/accounts").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("another one holds the writer lease"),
            "{body}"
        );

        front.activate(Router::new().route("/v1/accounts", get(|| async { "served" })));
        assert_eq!(
            answer(&front, "/v1/accounts").await,
            (StatusCode::OK, "served".to_owned())
        );

        front.deactivate();
        let (status, _) = answer(&front, "/v1/accounts").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
