//! SIGTERM during a stream of posts: the real `renkei` binary stops accepting, finishes its
//! in-flight commits, tells clients to reconnect, and every acknowledged post is stored.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use common::{Backend, Client, TestDb};
use futures::{SinkExt, StreamExt};
use renkei_protocol::{close, ClientMessage, ServerMessage};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(sigterm_loses_no_acknowledged_post);

async fn sigterm_loses_no_acknowledged_post(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = renkei::store::open(&db.url).await.expect("store");
    let fixture = common::seed(store.as_ref()).await;
    let token = renkei::session::random_token();
    store
        .create_sessions(&[renkei::store::NewSession {
            token_hash: renkei::session::token_hash(&token),
            user_id: fixture.alice,
            created_at: 0,
            expires_at: i64::MAX,
        }])
        .await
        .expect("session");

    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
        .env("RENKEI_LISTEN", "127.0.0.1:0")
        .env("RENKEI_DATABASE_URL", &db.url)
        .env("RENKEI_LOG_FORMAT", "json")
        .env("RENKEI_POSTS_PER_SECOND", "100000")
        .env("RENKEI_POST_BURST", "100000")
        .env("RENKEI_FRAMES_PER_SECOND", "100000")
        .env("RENKEI_FRAME_BURST", "100000")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start renkei");
    let mut logs = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let addr: std::net::SocketAddr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = logs.next_line().await.expect("log line") {
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if entry["fields"]["message"] == "listening" {
                return entry["fields"]["addr"]
                    .as_str()
                    .expect("addr")
                    .parse::<std::net::SocketAddr>()
                    .expect("addr");
            }
        }
        panic!("renkei exited before listening");
    })
    .await
    .expect("renkei did not start listening");
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });

    let client = Client::connect(addr, &token).await;
    let (mut sink, mut stream) = client.ws.split();
    let group = fixture.patient_group;
    let sender = tokio::spawn(async move {
        for i in 0..5000 {
            let post = ClientMessage::Post {
                group,
                client_id: format!("s-{i}"),
                text: format!("記録 {i}"),
            };
            let text = serde_json::to_string(&post).expect("json");
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });

    let mut acked: HashMap<String, i64> = HashMap::new();
    let mut signalled = false;
    let close_code = loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("server went silent");
        match frame {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerMessage::Ack(ack)) = serde_json::from_str(text.as_str()) {
                    acked.insert(ack.client_id, ack.seq);
                }
                if acked.len() >= 100 && !signalled {
                    let pid = server.id().expect("pid").to_string();
                    let status = std::process::Command::new("kill")
                        .args(["-TERM", &pid])
                        .status()
                        .expect("kill");
                    assert!(status.success());
                    signalled = true;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    assert!(signalled, "the stream ended before SIGTERM");
    assert_eq!(close_code, Some(close::GOING_AWAY));
    let status = tokio::time::timeout(Duration::from_secs(60), server.wait())
        .await
        .expect("renkei did not exit")
        .expect("wait");
    assert!(status.success(), "renkei exited with {status}");
    sender.abort();

    let stored = store
        .events_after(group, 0, i64::MAX, 100_000)
        .await
        .expect("read");
    let by_client: HashMap<String, i64> = stored
        .iter()
        .map(|e| match &e.body {
            renkei::store::EventBody::Post { client_id, .. } => (client_id.clone(), e.seq),
        })
        .collect();
    for (client_id, seq) in &acked {
        assert_eq!(
            by_client.get(client_id),
            Some(seq),
            "acknowledged post {client_id} lost"
        );
    }
    let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "no gap in the sequence"
    );
    assert!(acked.len() >= 100);
}
