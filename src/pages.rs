//! The pages `coledger serve` publishes beside the API (DESIGN §10): `/terminal` for shops,
//! `/wallet` for beneficiaries' phones, `/pay/{request}` for pay links, their assets, and
//! `/qr.svg` which draws a payload as a QR code. The files come from
//! `merchant_terminal::web`; everything else the pages do goes through `/v1`.

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use merchant_terminal::web::{self, Asset};
use serde::Deserialize;
use wallet_api::http::problem::Problem;

/// The longest text `/qr.svg` draws: a signed payload with an Arabic name is about 400
/// characters; this bounds the work one request can ask for.
const MAX_QR_TEXT: usize = 1024;

/// Scripts and styles only from this origin, nothing inline, no framing: the terminal page
/// holds a merchant's token and signing key.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
     form-action 'self'";

/// The page routes, to merge with the API's.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/wallet") }))
        .route("/terminal", get(|| async { page(web::TERMINAL_PAGE) }))
        .route("/wallet", get(|| async { page(web::WALLET_PAGE) }))
        .route(
            "/transparency",
            get(|| async { page(web::TRANSPARENCY_PAGE) }),
        )
        .route("/pay/{request}", get(pay_link))
        .route("/assets/currencies.json", get(currencies))
        .route("/assets/{name}", get(asset))
        .route("/qr.svg", get(qr_svg))
}

fn page(asset: Asset) -> Response {
    let mut response = served(asset.content_type, asset.body.to_owned());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Pages and assets are revalidated on every load, so a new release is never mixed with
/// cached modules of the old one.
fn served(content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `/pay/{request}`: the wallet page, which reads the request id from the path.
async fn pay_link(Path(request): Path<String>) -> Response {
    if request.parse::<ledger::PaymentRequestId>().is_err() {
        return Problem::not_found(format!("no payment request {request}")).into_response();
    }
    page(web::WALLET_PAGE)
}

async fn asset(Path(name): Path<String>) -> Response {
    match web::asset(&name) {
        Some(asset) => served(asset.content_type, asset.body.to_owned()),
        None => Problem::not_found(format!("no asset {name}")).into_response(),
    }
}

async fn currencies() -> Response {
    served("application/json", web::currencies_json())
}

#[derive(Deserialize)]
struct QrQuery {
    #[serde(default)]
    data: String,
}

/// `/qr.svg?data=…`: the text as a QR code. It carries nothing secret (the payload is shown
/// on screen anyway), so it is open and cacheable like any image of its URL.
async fn qr_svg(Query(query): Query<QrQuery>) -> Response {
    if query.data.is_empty() || query.data.chars().count() > MAX_QR_TEXT {
        return Problem::invalid_field(
            "data",
            format!("data must be 1 to {MAX_QR_TEXT} characters"),
        )
        .into_response();
    }
    match merchant_terminal::qr_render::svg(&query.data) {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "public, max-age=86400, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            svg,
        )
            .into_response(),
        Err(e) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "qr-too-long",
            "Cannot draw this QR code",
            e.to_string(),
        )
        .into_response(),
    }
}
