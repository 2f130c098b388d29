//! The bare reference hub: tokio-tungstenite broadcast to group members with the same
//! minimal wire format, and nothing else: no authentication (`?user=` names the user), no
//! persistence, no membership checks. Measured in the same run as renkei, it shows what
//! our guarantees cost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{SinkExt, StreamExt};
use renkei_protocol::{
    Ack, ClientMessage, EventData, GroupEvent, GroupId, Role, ServerMessage, UserProfile,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Group {
    seq: i64,
    members: Vec<mpsc::Sender<Message>>,
}

type Groups = Arc<Mutex<HashMap<GroupId, Group>>>;

/// Serves until the process is killed.
// tungstenite's handshake callback must return its own (large) error response type.
#[allow(clippy::result_large_err)]
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let groups: Groups = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let groups = Arc::clone(&groups);
        tokio::spawn(async move {
            let mut user = 0;
            let callback = |request: &Request, response: Response| {
                user = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("user="))
                    .and_then(|u| u.parse().ok())
                    .unwrap_or(0);
                Ok(response)
            };
            if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
                connection(ws, user, groups).await;
            }
        });
    }
}

fn text(message: &ServerMessage) -> Message {
    Message::text(serde_json::to_string(message).unwrap_or_default())
}

async fn connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    user: i64,
    groups: Groups,
) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.feed(message).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let _ = tx.send(Message::text(r#"{"type":"welcome"}"#)).await;
    let author = UserProfile {
        id: user,
        name: String::new(),
        profession: String::new(),
        facility: None,
        role: Role::Staff,
    };
    while let Some(Ok(Message::Text(frame))) = stream.next().await {
        match serde_json::from_str::<ClientMessage>(frame.as_str()) {
            Ok(ClientMessage::Sync { groups: cursors }) => {
                for cursor in cursors {
                    let seq = {
                        let mut all = groups.lock().unwrap_or_else(PoisonError::into_inner);
                        let group = all.entry(cursor.group).or_default();
                        group.members.push(tx.clone());
                        group.seq
                    };
                    let _ = tx
                        .send(text(&ServerMessage::Synced {
                            group: cursor.group,
                            seq,
                        }))
                        .await;
                }
            }
            Ok(ClientMessage::Post {
                group,
                client_id,
                text: body,
                ..
            }) => {
                let at = renkei_domain::clock::now_ms();
                let ack = {
                    let mut all = groups.lock().unwrap_or_else(PoisonError::into_inner);
                    let entry = all.entry(group).or_default();
                    entry.seq += 1;
                    let event = text(&ServerMessage::Event(GroupEvent {
                        group,
                        seq: entry.seq,
                        at,
                        data: EventData::Post {
                            author: author.clone(),
                            client_id: client_id.clone(),
                            text: body,
                            file: None,
                        },
                    }));
                    for member in &entry.members {
                        let _ = member.try_send(event.clone());
                    }
                    Ack {
                        client_id,
                        group,
                        seq: entry.seq,
                        at,
                    }
                };
                let _ = tx.send(text(&ServerMessage::Ack(ack))).await;
            }
            _ => {}
        }
    }
    writer.abort();
}
