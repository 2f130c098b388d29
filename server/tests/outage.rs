//! PostgreSQL going away and coming back, seen through a loopback proxy the test can cut:
//! posts are refused with a retryable error (never acknowledged), sockets stay open,
//! `/readyz` reports the outage, and the server recovers by itself.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, TestApp};
use renkei_protocol::{ErrorCode, ServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards a loopback port to PostgreSQL until cut; `restore` listens again on the same port.
struct Proxy {
    listen: SocketAddr,
    upstream: SocketAddr,
    running: CancellationToken,
}

impl Proxy {
    async fn start(listen: SocketAddr, upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen).await.expect("proxy bind");
        let running = CancellationToken::new();
        let token = running.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Proxy {
            listen,
            upstream,
            running,
        }
    }

    /// Drops every connection and stops listening: the database is gone.
    fn cut(self) -> (SocketAddr, SocketAddr) {
        self.running.cancel();
        (self.listen, self.upstream)
    }
}

/// The `host:port` of a `postgres://user:password@host:port/db` URL.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split_once('/').map_or(rest, |(host, _)| host)
}

async fn ready(app: &TestApp) -> u16 {
    reqwest::get(app.url("/readyz"))
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_are_refused_while_postgresql_is_down_and_flow_again_after() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    // The test database's server, as TestDb reaches it.
    let admin = std::env::var("RENKEI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let host = host_port(&admin).to_string();
    let upstream = tokio::net::lookup_host(&host)
        .await
        .expect("database address")
        .next()
        .expect("database address");
    let mut proxy = Some(Proxy::start(port, upstream).await);
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        // The node reaches its database only through the proxy.
        let url = c.database_url.clone().expect("database url");
        c.database_url = Some(url.replacen(&host, &port.to_string(), 1));
    })
    .await;
    let g = app.fixture.patient_group;
    let mut alice = app.client(app.fixture.alice).await;
    let mut bob = app.client(app.fixture.bob).await;
    bob.sync(g, 0).await;
    assert_eq!(alice.post_acked(g, "before", "停止前").await, 1);
    assert_eq!(ready(&app).await, 200);

    let (listen, upstream) = proxy.take().expect("proxy").cut();
    alice.post(g, "during", "停止中の投稿").await;
    let refused = loop {
        match alice.recv().await {
            ServerMessage::Error(error) => break error,
            ServerMessage::Ack(ack) => panic!("acknowledged without a database: {ack:?}"),
            _ => continue,
        }
    };
    assert_eq!(
        (refused.code, refused.client_id.as_deref()),
        (ErrorCode::Unavailable, Some("during"))
    );
    assert!(refused.code.retryable());
    assert_eq!(ready(&app).await, 503, "/readyz reports the outage");

    // The database returns: the same post, retried under its id, goes through, once.
    let _proxy = Proxy::start(listen, upstream).await;
    let mut status = 0;
    for _ in 0..100 {
        status = ready(&app).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "/readyz recovers by itself");
    assert_eq!(alice.post_acked(g, "during", "停止中の投稿").await, 2);
    let seqs: Vec<i64> = [bob.next_event().await.seq, bob.next_event().await.seq].into();
    assert_eq!(seqs, [1, 2], "the reader never lost its socket");
    app.stop().await;
}
