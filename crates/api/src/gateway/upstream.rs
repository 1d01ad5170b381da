//! The HTTP client of one endpoint: hyper's pooled client straight to it, or
//! reqwest through its outbound proxy; redirects are never followed.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Uri};
use gatehouse_core::catalog::health::HealthCell;
use gatehouse_core::error::error_chain;
use gatehouse_core::model::catalog::Endpoint;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Api;

/// An endpoint as the gateway calls it: its client (connection pool, proxy,
/// connect timeout) and its routes' URLs, parsed once.
pub(super) struct Upstream {
    pub(super) endpoint: Arc<Endpoint>,
    transport: Transport,
    urls: [Uri; 4],
    /// Where this instance records how the endpoint answers.
    pub(super) health: Arc<HealthCell>,
}

type DirectClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How the gateway reaches an endpoint.
enum Transport {
    /// Straight to the endpoint: hyper's pooled client, the lean path.
    Direct(Box<DirectClient>),
    /// Through the endpoint's outbound HTTP proxy.
    Proxied(reqwest::Client),
}

/// Why an upstream call could not be made.
pub(super) struct SendError {
    pub(super) timeout: bool,
    pub(super) message: String,
}

impl Upstream {
    pub(super) fn new(endpoint: &Arc<Endpoint>, health: Arc<HealthCell>) -> Result<Self, String> {
        let connect_timeout = Duration::from_millis(endpoint.connect_timeout_ms);
        let transport = match &endpoint.proxy_url {
            None => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(connect_timeout));
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_webpki_roots()
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http);
                Transport::Direct(Box::new(
                    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(90))
                        .pool_timer(TokioTimer::new())
                        .build(https),
                ))
            }
            Some(proxy) => Transport::Proxied(
                reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(90))
                    // An API answer is never a redirect to follow: following
                    // one would send the credential to wherever it points.
                    .redirect(reqwest::redirect::Policy::none())
                    .tcp_nodelay(true)
                    .proxy(reqwest::Proxy::all(proxy).map_err(|e| e.to_string())?)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
        };
        let url = |api: Api| {
            format!("{}{}", endpoint.base_url.trim_end_matches('/'), api.path())
                .parse::<Uri>()
                .map_err(|e| format!("the base URL is not a URL: {e}"))
        };
        Ok(Upstream {
            endpoint: endpoint.clone(),
            transport,
            urls: [
                url(Api::ChatCompletions)?,
                url(Api::Embeddings)?,
                url(Api::Messages)?,
                url(Api::CountTokens)?,
            ],
            health,
        })
    }

    /// POSTs `body` with `headers` to the route of `api`; the answer's body
    /// streams as it arrives. Redirects are never followed.
    pub(super) async fn post(
        &self,
        api: Api,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<axum::http::Response<Body>, SendError> {
        let url = self.urls[api as usize].clone();
        match &self.transport {
            Transport::Direct(client) => {
                let mut request = axum::http::Request::new(Full::new(Bytes::from(body)));
                *request.method_mut() = axum::http::Method::POST;
                *request.uri_mut() = url;
                *request.headers_mut() = headers;
                match client.request(request).await {
                    Ok(response) => Ok(response.map(Body::new)),
                    Err(e) => Err(SendError {
                        timeout: caused_by_timeout(&e),
                        message: error_chain(&e),
                    }),
                }
            }
            Transport::Proxied(client) => {
                match client
                    .post(url.to_string())
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        Ok(axum::http::Response::<reqwest::Body>::from(response).map(Body::new))
                    }
                    Err(e) => Err(SendError {
                        timeout: e.is_timeout(),
                        message: error_chain(&e),
                    }),
                }
            }
        }
    }
}

/// Whether a connection failed because it timed out.
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || cause.to_string().contains("timed out")
        {
            return true;
        }
        source = cause.source();
    }
    false
}
