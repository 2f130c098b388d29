//! OwnSmtp and SilentSmtp against a real SMTP client (lettre), as the server would send.

use std::time::{Duration, Instant};

use lettre::message::{header::ContentType, Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use renkei_testbed::{OwnSmtp, SilentSmtp};

const WAIT: Duration = Duration::from_secs(10);

/// A client for `smtp://127.0.0.1:<port>` (lettre's `from_url` needs a TLS feature, which
/// plain SMTP on loopback does not).
fn transport(url: &str) -> AsyncSmtpTransport<Tokio1Executor> {
    let port = url
        .strip_prefix("smtp://127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .expect("smtp://127.0.0.1:<port>");
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(Duration::from_secs(1)))
        .build()
}

fn mailbox(text: &str) -> Mailbox {
    text.parse().expect("a mailbox")
}

#[tokio::test]
async fn keeps_a_japanese_message_decoded() {
    let smtp = OwnSmtp::start().await.expect("SMTP server");
    assert_eq!(smtp.url(), format!("smtp://127.0.0.1:{}", smtp.port()));
    let subject = "【訪問予定】田中様の訪問時間が変更されました";
    let body = "明日の訪問は10時からです。\nよろしくお願いいたします。\n";
    let message = Message::builder()
        .from(mailbox("連携 通知 <notify@renkei.example>"))
        .to(mailbox("nurse@clinic.example"))
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .expect("message");
    transport(&smtp.url())
        .send(message)
        .await
        .expect("accepted");

    let mail = smtp.wait_for(1, WAIT).await;
    assert_eq!(mail.len(), 1);
    let mail = &mail[0];
    assert_eq!(mail.from, "notify@renkei.example");
    assert_eq!(mail.to, ["nurse@clinic.example"]);
    assert_eq!(mail.subject, subject);
    assert_eq!(mail.body, body);
    assert_eq!(mail.html, None);
    assert_eq!(
        mail.header("from"),
        Some("連携 通知 <notify@renkei.example>")
    );
    assert_eq!(mail.defects, Vec::<String>::new());
    // What went over the wire was encoded: the decoding above was needed.
    assert!(mail.raw.contains("=?utf-8?"), "{}", mail.raw);
    assert!(
        !mail.raw.contains("田中様") && !mail.raw.contains("明日"),
        "{}",
        mail.raw
    );
}

#[tokio::test]
async fn keeps_both_parts_of_an_alternative_in_arrival_order() {
    let smtp = OwnSmtp::start().await.expect("SMTP server");
    let transport = transport(&smtp.url());
    for n in 1..=3 {
        let message = Message::builder()
            .from(mailbox("notify@renkei.example"))
            .to(mailbox(&format!("nurse{n}@clinic.example")))
            .to(mailbox("office@clinic.example"))
            .subject(format!("新着メッセージ {n}"))
            .multipart(MultiPart::alternative_plain_html(
                format!("メッセージ {n} が届きました。"),
                format!("<p>メッセージ <b>{n}</b> が届きました。</p>"),
            ))
            .expect("message");
        transport.send(message).await.expect("accepted");
    }
    let mail = smtp.wait_for(3, WAIT).await;
    let subjects: Vec<&str> = mail.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["新着メッセージ 1", "新着メッセージ 2", "新着メッセージ 3"]
    );
    assert_eq!(
        mail[1].to,
        ["nurse2@clinic.example", "office@clinic.example"]
    );
    assert_eq!(mail[1].body.trim_end(), "メッセージ 2 が届きました。");
    assert_eq!(
        mail[1].html.as_deref().map(str::trim_end),
        Some("<p>メッセージ <b>2</b> が届きました。</p>")
    );
    assert_eq!(smtp.messages(), mail);
}

#[tokio::test]
async fn refuses_a_listed_recipient_with_550() {
    let smtp = OwnSmtp::start_refusing(&["Gone@clinic.example"])
        .await
        .expect("SMTP server");
    let transport = transport(&smtp.url());
    let message = |to: &str| {
        Message::builder()
            .from(mailbox("notify@renkei.example"))
            .to(mailbox(to))
            .subject("hello")
            .body(String::from("hello"))
            .expect("message")
    };
    let error = transport
        .send(message("gone@clinic.example"))
        .await
        .expect_err("refused");
    assert!(error.is_permanent(), "{error}");
    assert_eq!(
        error.status().map(|code| code.to_string()),
        Some("550".into())
    );
    assert!(error.to_string().contains("mailbox unavailable"), "{error}");

    // Another recipient is accepted, and the refused message was never kept.
    transport
        .send(message("nurse@clinic.example"))
        .await
        .expect("accepted");
    let mail = smtp.wait_for(1, WAIT).await;
    let to: Vec<&[String]> = mail.iter().map(|m| m.to.as_slice()).collect();
    assert_eq!(to, [["nurse@clinic.example".to_string()]]);
}

#[tokio::test]
async fn wait_for_returns_what_there_is_at_the_timeout() {
    let smtp = OwnSmtp::start().await.expect("SMTP server");
    let started = Instant::now();
    assert!(smtp
        .wait_for(1, Duration::from_millis(200))
        .await
        .is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < WAIT,
        "{waited:?}"
    );
}

/// A client's own deadline fires against a server that accepts and says nothing. (lettre's
/// async `timeout` bounds only the TCP connect, not the wait for the greeting: a server
/// using lettre needs a deadline of its own around each send, as here.)
#[tokio::test]
async fn a_silent_server_makes_a_client_time_out() {
    let silent = SilentSmtp::start().await.expect("silent SMTP server");
    assert_eq!(silent.url(), format!("smtp://127.0.0.1:{}", silent.port()));
    let message = Message::builder()
        .from(mailbox("notify@renkei.example"))
        .to(mailbox("nurse@clinic.example"))
        .subject("hello")
        .body(String::from("hello"))
        .expect("message");
    let started = Instant::now();
    let deadline = Duration::from_secs(1);
    let outcome = tokio::time::timeout(deadline, transport(&silent.url()).send(message)).await;
    assert!(outcome.is_err(), "answered: {outcome:?}");
    let waited = started.elapsed();
    assert!(waited >= deadline && waited < WAIT, "{waited:?}");
}
