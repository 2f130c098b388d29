//! Built-in TLS: HTTPS and WSS with a certificate from files, TLS 1.3 preferred and 1.2
//! accepted, HSTS, and nothing in plain HTTP on the TLS port.
mod common;

use std::sync::Arc;

use common::{seed, test_config, Backend, Node, TestDb};
use futures::StreamExt;
use renkei_protocol::ServerMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client trusting only `cert`, speaking only `versions`.
fn connector(
    cert: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls_stream(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let name = ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("handshake")
}

/// One HTTP/1.1 request over TLS; the whole response as text.
async fn get(connector: &TlsConnector, addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tls_stream(connector, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_certificate_from_files() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let dir = tempfile::tempdir().expect("dir");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.key_pair.serialize_pem()).expect("write key");
    let cert = key.cert.der().clone();

    let db = TestDb::new(Backend::Sqlite).await;
    let store = renkei::store::open(&db.url).await.expect("store");
    let fixture = seed(store.as_ref()).await;
    let mut config = test_config(&db);
    config.tls_cert = Some(cert_path);
    config.tls_key = Some(key_path);
    let node = Node::start_with(config).await;

    let tls13 = connector(&cert, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let mut ready = String::new();
    for _ in 0..200 {
        ready = get(&tls13, node.addr, "/readyz").await;
        if ready.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let lower = ready.to_lowercase();
    assert!(
        lower.contains("strict-transport-security: max-age=31536000"),
        "{ready}"
    );
    // 1.3 is chosen when the client speaks it; a 1.2-only client still gets in.
    let stream = tls_stream(&tls13, node.addr).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let tls12 = connector(&cert, &[&rustls::version::TLS12]);
    let stream = tls_stream(&tls12, node.addr).await;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/readyz", node.addr))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // The WebSocket works over TLS.
    let token = common::session(store.as_ref(), fixture.alice).await;
    let mut request = "wss://localhost/ws".into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let stream = tls_stream(&tls13, node.addr).await;
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("upgrade over TLS");
    assert_eq!(response.status().as_u16(), 101);
    let first = ws.next().await.expect("a frame").expect("a message");
    let welcome: ServerMessage =
        serde_json::from_str(first.to_text().expect("text")).expect("json");
    assert!(matches!(welcome, ServerMessage::Welcome(_)), "{welcome:?}");
    node.stop().await;
}
