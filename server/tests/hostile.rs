//! Hostile input over a real socket (issue 10): hundreds of random frames — garbage,
//! random JSON, real message types with absurd values — each answered with a documented
//! message or error, the socket kept open, and the other members served throughout.
mod common;

use common::{Backend, Client, TestApp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use renkei_protocol::ServerMessage;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// A value of some JSON type, absurd more often than not.
fn value(rng: &mut StdRng, group: i64) -> Value {
    match rng.gen_range(0..12) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(i64::MAX),
        4 => json!(-1),
        5 => json!(group),
        6 => json!(rng.gen::<f64>() * 1e300),
        7 => json!("x".repeat(rng.gen_range(0..20_000))),
        8 => json!("\u{0}\u{202e}<script>'; DROP TABLE events; --"),
        9 => json!([group, "a", null]),
        10 => json!({"group": group, "after": rng.gen::<i64>()}),
        _ => json!(rng.gen_range(-5..5)),
    }
}

/// A frame a hostile client might send.
fn frame(rng: &mut StdRng, group: i64) -> String {
    let kinds = ["post", "sync", "history", "read", "shout", "", "POST"];
    match rng.gen_range(0..6) {
        // Printable garbage.
        0 => (0..rng.gen_range(0..200))
            .map(|_| char::from(rng.gen_range(32u8..127)))
            .collect(),
        // Any Unicode.
        1 => (0..rng.gen_range(0..100))
            .filter_map(|_| char::from_u32(rng.gen_range(0..0x11_0000)))
            .collect(),
        // JSON that is not an object.
        2 => value(rng, group).to_string(),
        // A thousand cursors.
        3 => json!({"type": "sync", "groups": (0..1000).map(|i| json!({"group": i, "after": -i})).collect::<Vec<_>>()}).to_string(),
        // A message type with fields of any type.
        _ => {
            let mut object = serde_json::Map::new();
            object.insert("type".into(), json!(kinds[rng.gen_range(0..kinds.len())]));
            for key in ["group", "client_id", "text", "groups", "seq", "before", "limit", "extra"] {
                if rng.gen_bool(0.6) {
                    object.insert(key.into(), value(rng, group));
                }
            }
            Value::Object(object).to_string()
        }
    }
}

/// The seed corpus (`tests/corpus/*.frame`), aimed at `group`.
fn corpus(group: i64) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/corpus")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "frame"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .expect("a UTF-8 frame")
                .replace(r#""group":1,"#, &format!(r#""group":{group},"#))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_get_documented_answers_and_others_are_served() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut hostile = app.client(f.alice).await;
    let mut bystander = app.client(f.bob).await;
    bystander.sync(g, 0).await;
    let mut rng = StdRng::seed_from_u64(20_261_124);
    let mut errors = 0;
    // The seed corpus first (its group ids become this test's group), then random frames.
    let corpus = corpus(g);
    let frames: Vec<String> = corpus
        .iter()
        .cloned()
        .chain((0..400).map(|_| frame(&mut rng, g)))
        .collect();
    for (i, text) in frames.into_iter().enumerate() {
        hostile.send_raw(Message::text(text.clone())).await;
        // A request with a known answer follows each frame: everything before that answer
        // was the server's reply to the frame, and each is a protocol message (reading
        // it would fail otherwise: an undocumented code does not parse).
        hostile
            .send_raw(Message::text(
                json!({"type": "history", "group": g, "before": 1, "limit": 1}).to_string(),
            ))
            .await;
        loop {
            match hostile.next().await {
                Ok(ServerMessage::Page { group, .. }) if group == g => break,
                Ok(ServerMessage::Error(_)) => errors += 1,
                Ok(_) => {}
                Err(ended) => panic!("frame {i} {text:?} ended the socket: {ended:?}"),
            }
        }
    }
    assert!(errors > 100, "most random frames are refused: {errors}");
    assert!(corpus.len() >= 30);
    // The bystander was served all along: a post now reaches them after whatever the
    // random frames posted.
    let mut writer = app.client(f.dave).await;
    let seq = writer.post_acked(g, "after-the-storm", "通常の記録").await;
    loop {
        let event = bystander.next_event().await;
        if event.seq == seq {
            break;
        }
    }
    // And nothing the frames did broke the group's sequence for a newcomer.
    let mut late = Client::connect(app.addr, &app.token(f.bob).await).await;
    let events = late.sync(g, 0).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(seqs.last(), Some(&seq));
    app.stop().await;
}
