//! HTTP proxies with failover, as CernVM-FS's proxy groups: requests go
//! through the first usable proxy of an ordered list; one that cannot be
//! reached, times out or answers with a gateway error is left out for a
//! while (its back-off), and the request goes on through the next one. When
//! every proxy is down they are all tried anyway, soonest back first, so a
//! request is never refused only because of earlier failures.

use std::convert::Infallible;
use std::time::Duration;

use reqwest::{Response, StatusCode};

use crate::{DownList, OciError};

/// The entry of a proxy list that means "no proxy": connect directly.
pub const DIRECT: &str = "DIRECT";

/// One way out: a proxy, direct, or the environment's `http_proxy`.
#[derive(Debug)]
pub struct Route {
    name: String,
    client: reqwest::Client,
}

impl Route {
    /// The proxy URL, `DIRECT`, or `default` (the environment's proxy settings).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The HTTP client that goes this way.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// The ordered proxy list of a client, with each proxy's health.
#[derive(Debug)]
pub struct Routes {
    routes: Vec<Route>,
    health: DownList,
}

impl Routes {
    /// Routes through `proxies` in order (`http://host:port`, or [`DIRECT`]);
    /// none: one route with the environment's proxy settings (`http_proxy`,
    /// `https_proxy`, `no_proxy`). `builder` makes each route's client.
    pub fn new(
        proxies: &[String],
        backoff: Duration,
        builder: impl Fn() -> reqwest::ClientBuilder,
    ) -> Result<Self, OciError> {
        let route = |name: &str, b: reqwest::ClientBuilder| {
            let client = b
                .build()
                .map_err(|source| OciError::HttpClient { source })?;
            Ok::<_, OciError>(Route {
                name: name.to_owned(),
                client,
            })
        };
        let mut routes = Vec::new();
        for proxy in proxies {
            let b = match proxy.as_str() {
                DIRECT => builder().no_proxy(),
                url => {
                    let proxy = reqwest::Proxy::all(url).map_err(|_| OciError::InvalidProxy {
                        proxy: url.to_owned(),
                    })?;
                    builder().proxy(proxy)
                }
            };
            routes.push(route(proxy, b)?);
        }
        if routes.is_empty() {
            routes.push(route("default", builder())?);
        }
        Ok(Self {
            routes,
            health: DownList::new(backoff),
        })
    }

    /// The routes to try, in order: those not down as listed, then those
    /// down, soonest back first.
    pub fn in_order(&self) -> Vec<&Route> {
        self.health.in_order(&self.routes, |r| &r.name)
    }

    /// Leaves `route` out for the back-off, if there is another way.
    pub fn failed(&self, route: &Route, why: &dyn std::fmt::Display) {
        if self.routes.len() < 2 {
            return;
        }
        let backoff = self.health.backoff();
        tracing::warn!(proxy = %route.name, "proxy failed, using the next one for {backoff:?}: {why}");
        self.health.mark_down(&route.name);
    }

    /// Sends a request built by `build` for each route's client, going on
    /// to the next route after a route failure (see [`is_route_failure`]).
    /// Returns the first other outcome, or the last route's.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Response, reqwest::Error> {
        let built =
            |client: &reqwest::Client| std::future::ready(Ok::<_, Infallible>(build(client)));
        match self.send_with(built, is_route_failure).await {
            Ok(outcome) => outcome,
            Err(never) => match never {},
        }
    }

    /// [`Routes::send`] for requests whose building can fail (a body read
    /// from a file) and whose callers judge which outcomes move on to the
    /// next route (`fails_over`).
    pub async fn send_with<Fut, E>(
        &self,
        build: impl Fn(&reqwest::Client) -> Fut,
        fails_over: impl Fn(&Result<Response, reqwest::Error>) -> bool,
    ) -> Result<Result<Response, reqwest::Error>, E>
    where
        Fut: Future<Output = Result<reqwest::RequestBuilder, E>>,
    {
        let order = self.in_order();
        let last = order.len() - 1;
        for (i, route) in order.into_iter().enumerate() {
            let outcome = build(route.client()).await?.send().await;
            if i < last && fails_over(&outcome) {
                self.failed(route, &describe(&outcome));
                continue;
            }
            return Ok(outcome);
        }
        unreachable!("there is always a route")
    }
}

/// Whether an outcome blames the way rather than the server: no connection,
/// a timeout, or a gateway error (502, 503, 504) as proxies answer when they
/// cannot get through.
pub fn is_route_failure(outcome: &Result<Response, reqwest::Error>) -> bool {
    match outcome {
        Ok(response) => matches!(
            response.status(),
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
        ),
        Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
    }
}

/// An outcome in a few words, for logs.
pub fn describe(outcome: &Result<Response, reqwest::Error>) -> String {
    match outcome {
        Ok(response) => format!("HTTP {} from {}", response.status(), response.url()),
        Err(e) => e.to_string(),
    }
}
