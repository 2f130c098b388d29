//! SIGTERM during a stream of posts: the real `renkei` binary stops accepting, finishes its
//! in-flight commits, tells clients to reconnect, and every acknowledged post is stored.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Backend, Client, TestDb};
use futures::{SinkExt, StreamExt};
use renkei_protocol::{close, ClientMessage, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(sigterm_loses_no_acknowledged_post);

async fn sigterm_loses_no_acknowledged_post(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = renkei::store::open(&db.url).await.expect("store");
    let fixture = common::seed(store.as_ref()).await;
    let token = common::session(store.as_ref(), fixture.alice).await;
    let server = common::Process::start(&[("RENKEI_DATABASE_URL", db.url.as_str())]).await;
    let client = Client::connect(server.addr, &token).await;
    let (mut sink, mut stream) = client.ws.split();
    let group = fixture.patient_group;
    let sender = tokio::spawn(async move {
        for i in 0..5000 {
            let post = ClientMessage::Post {
                group,
                client_id: format!("s-{i}"),
                text: format!("記録 {i}"),
                file: None,
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
                    server.signal("TERM");
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
    let mut server = server;
    let status = tokio::time::timeout(Duration::from_secs(60), server.child.wait())
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
        .filter_map(|e| match &e.body {
            renkei::store::EventBody::Post { client_id, .. } => Some((client_id.clone(), e.seq)),
            _ => None,
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
