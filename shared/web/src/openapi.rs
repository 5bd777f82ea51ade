//! Serving a service's OpenAPI document, and merging several into one.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::OpenApi;

/// A route serving `doc` as JSON at `path`.
pub fn openapi_route<S: Clone + Send + Sync + 'static>(path: &str, doc: OpenApi) -> Router<S> {
    let json = doc.to_pretty_json().unwrap_or_default();
    Router::new().route(
        path,
        get(move || {
            let json = json.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json,
                )
            }
        }),
    )
}

/// Merges service documents into one (paths and components), titled for the whole API.
pub fn merge(docs: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut merged = OpenApi::default();
    merged.info.title = "Constellation API".to_owned();
    merged.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for doc in docs {
        merged.merge(doc);
    }
    merged
}
