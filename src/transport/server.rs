//! The one way a roster process serves gRPC: see [`ServerTransport`].

use std::{convert::Infallible, future::Future, time::Duration};

use http::{Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    server::NamedService,
    service::RoutesBuilder,
    transport::{Server, server::TcpIncoming},
};
use tower::Service;
use tracing::warn;

use super::{DEFAULT_DRAIN, Keepalive, ServerTls, acceptor, health, reflection};
use crate::{auth::AuthLayer, message_limit, rpc_trace::RequestTraceLayer};

/// How a server keeps its connections and how long it drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// HTTP/2 keepalive pings to every client; `None` sends none (the client's own keepalive still applies).
    pub keepalive: Option<Keepalive>,
    /// Once shutdown begins, the longest wait for open calls to finish (S6); the server's owner then goes on with
    /// its own shutdown, and calls still open end with the process.
    pub drain: Duration,
}

impl Default for ServeOptions {
    /// No keepalive pings; a drain of [`DEFAULT_DRAIN`].
    fn default() -> Self {
        Self { keepalive: None, drain: DEFAULT_DRAIN }
    }
}

/// A set of gRPC services, served on one listener the way every roster server serves:
///
/// - connections with `TCP_NODELAY` (a feed frame or an answer is sent at once, not held back by Nagle's
///   algorithm), and the HTTP/2 keepalive of [`ServeOptions::keepalive`];
/// - every call through the layers of [`rpc_trace`](crate::rpc_trace) (a request id and a tracing span, R5), of
///   [`crate::auth`] when [`ServerTransport::authenticate`] gives one (the caller's credential and role), and of
///   [`message_limit`] (an oversize request is answered `RESOURCE_EXHAUSTED`);
/// - `grpc.health.v1.Health` beside the services, SERVING for the server (`""`) and for each service while it
///   serves;
/// - reflection v1 and v1alpha (grpcurl 1.8.6 asks for v1alpha), advertising exactly the services served.
///
/// When the `shutdown` given to [`ServerTransport::serve`] completes, the server goes away in order: health turns
/// NOT_SERVING and every health watch ends (a load balancer's watch would otherwise hold the drain), the token
/// given to [`ServerTransport::cancel_when_going_away`] is cancelled (so long-lived streams end themselves), no
/// new connection or call is accepted, and open calls get at most [`ServeOptions::drain`] to finish.
#[derive(Debug)]
pub struct ServerTransport {
    options: ServeOptions,
    routes: RoutesBuilder,
    services: Vec<&'static str>,
    going_away: Option<CancellationToken>,
    tls: Option<ServerTls>,
    auth: Option<AuthLayer>,
}

impl ServerTransport {
    /// A server with no service yet.
    pub fn new(options: ServeOptions) -> Self {
        Self {
            options,
            routes: RoutesBuilder::default(),
            services: Vec::new(),
            going_away: None,
            tls: None,
            auth: None,
        }
    }

    /// Serves over TLS with `tls` (none: plaintext), through roster's own acceptor: the certificate is reloaded
    /// when its files change or on SIGHUP, and every request carries the client's verified certificate chain
    /// (`tonic::Request::peer_certs`).
    pub fn tls(mut self, tls: Option<ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Adds a service, which health and reflection then name.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.services.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Cancels `token` when shutdown begins, after health says NOT_SERVING and before the drain: the services'
    /// long-lived streams watch it to end themselves (roster-server ends every `Watch` with `UNAVAILABLE`).
    pub fn cancel_when_going_away(mut self, token: CancellationToken) -> Self {
        self.going_away = Some(token);
        self
    }

    /// Authenticates every call with `auth` ([`crate::auth`]): inside the request-trace layer, so a refused call
    /// is logged with its request id, and before any service sees it.
    pub fn authenticate(mut self, auth: AuthLayer) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Serves on `listener` until `shutdown` completes, then goes away and drains (see [`ServerTransport`]).
    /// Returns once every call is done or the drain ran out (then logging that calls are still open).
    ///
    /// # Errors
    /// When the gRPC server fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let Self { options, mut routes, services, going_away, tls, auth } = self;
        let (mut health, health_service) = health::serving(&services).await;
        let mut advertised = vec![health::name_of(&health_service)];
        advertised.extend(&services);
        let (reflection_v1, reflection_v1alpha) = reflection::services(&advertised);
        routes.add_service(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);

        let (stop_accepting, accepting_stopped) = tokio::sync::oneshot::channel::<()>();
        let router = Server::builder()
            .http2_keepalive_interval(options.keepalive.map(|k| k.interval))
            .http2_keepalive_timeout(options.keepalive.map(|k| k.timeout))
            .layer(RequestTraceLayer)
            .layer(tower::util::option_layer(auth))
            .layer(message_limit::layer())
            .add_routes(routes.routes());
        let accepting_stopped = async {
            let _ = accepting_stopped.await;
        };
        let going_away = async move {
            health.going_away(&services).await;
            if let Some(token) = going_away {
                token.cancel();
            }
            let _ = stop_accepting.send(());
        };
        match tls {
            Some(tls) => {
                let server = router.serve_with_incoming_shutdown(acceptor::incoming(listener, tls), accepting_stopped);
                until_drained(server, shutdown, going_away, options.drain).await
            }
            None => {
                let server = router.serve_with_incoming_shutdown(incoming(listener), accepting_stopped);
                until_drained(server, shutdown, going_away, options.drain).await
            }
        }
    }
}

/// Runs `server` until `shutdown` completes, then `going_away` (which stops it accepting), then gives it `drain`
/// to finish its calls.
async fn until_drained(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    shutdown: impl Future<Output = ()>,
    going_away: impl Future<Output = ()>,
    drain: Duration,
) -> Result<(), tonic::transport::Error> {
    tokio::pin!(server);
    tokio::select! {
        served = &mut server => served,
        () = shutdown => {
            going_away.await;
            match tokio::time::timeout(drain, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    warn!(drain_s = drain.as_secs_f64(), "drain limit reached; exiting with calls still open");
                    Ok(())
                }
            }
        }
    }
}

/// The connections a plaintext server accepts (a TLS server's are [`acceptor::incoming`]'s).
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tonic::{Request, Response, Status, codegen::tokio_stream};
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    use super::*;
    use crate::{
        pb::{self, assignment_feed_client::AssignmentFeedClient, assignment_feed_server::AssignmentFeedServer},
        transport::ClientOptions,
    };

    const WAIT: Duration = Duration::from_secs(10);

    /// A feed whose every `Watch` stays open, sending nothing, until the server closes it.
    struct OpenForever;

    #[tonic::async_trait]
    impl pb::assignment_feed_server::AssignmentFeed for OpenForever {
        type WatchStream = tokio_stream::Pending<Result<pb::WatchResponse, Status>>;

        async fn watch(&self, _: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
            Ok(Response::new(tokio_stream::pending()))
        }

        async fn report_applied(
            &self,
            _: Request<pb::ReportAppliedRequest>,
        ) -> Result<Response<pb::ReportAppliedResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }
    }

    /// Serves [`OpenForever`] on a free port until the returned sender is used or dropped.
    async fn start(
        options: ServeOptions,
        going_away: CancellationToken,
    ) -> (tonic::transport::Channel, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server = ServerTransport::new(options)
            .add_service(AssignmentFeedServer::new(OpenForever))
            .cancel_when_going_away(going_away);
        let served = tokio::spawn(async move {
            let shutdown = async {
                let _ = shutdown_rx.await;
            };
            server.serve(listener, shutdown).await.unwrap();
        });
        (ClientOptions::default().connect(&url).await.unwrap(), shutdown, served)
    }

    fn check(service: &str) -> HealthCheckRequest {
        HealthCheckRequest { service: service.into() }
    }

    #[tokio::test]
    async fn health_serves_then_goes_away_before_the_streams_are_ended() {
        let going_away = CancellationToken::new();
        let (channel, shutdown, served) = start(ServeOptions::default(), going_away.clone()).await;
        let mut health = HealthClient::new(channel);
        for service in ["", "roster.v1.AssignmentFeed"] {
            let answer = health.check(check(service)).await.unwrap();
            assert_eq!(answer.get_ref().status(), ServingStatus::Serving, "{service:?}");
            assert!(answer.metadata().get("x-request-id").is_some(), "every call goes through the request-trace layer");
        }
        let mut watch = health.watch(check("roster.v1.AssignmentFeed")).await.unwrap().into_inner();
        assert_eq!(watch.message().await.unwrap().unwrap().status(), ServingStatus::Serving);

        shutdown.send(()).unwrap();
        let next = tokio::time::timeout(WAIT, watch.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(next.status(), ServingStatus::NotServing, "a watcher hears NOT_SERVING first");
        let end = tokio::time::timeout(WAIT, watch.message()).await.unwrap();
        assert!(matches!(end, Ok(None)), "then its watch ends: {end:?}");
        tokio::time::timeout(WAIT, going_away.cancelled()).await.expect("long-lived streams are told to end");
        tokio::time::timeout(WAIT, served).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn serving_ends_when_the_drain_runs_out_even_with_a_call_open() {
        let drain = Duration::from_millis(300);
        let options = ServeOptions { keepalive: None, drain };
        let (channel, shutdown, served) = start(options, CancellationToken::new()).await;
        let mut feed = AssignmentFeedClient::new(channel);
        let open = feed.watch(pb::WatchRequest::default()).await.unwrap().into_inner();

        let asked = Instant::now();
        shutdown.send(()).unwrap();
        tokio::time::timeout(WAIT, served).await.expect("serving ends once the drain runs out").unwrap();
        assert!(asked.elapsed() >= drain, "the open call was given the whole drain: {:?}", asked.elapsed());
        drop(open);
    }
}
