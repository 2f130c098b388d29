//! OwnPush over real HTTPS on loopback, sent to as a server would: payloads encrypted by
//! another implementation (web-push-native, RFC 8291), VAPID JWTs signed here with
//! RustCrypto's ES256, posted by reqwest trusting only the service's certificate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::OsRng;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use renkei_testbed::{Behaviour, OwnPush, PushSubscription};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH};
use web_push_native::{Auth, WebPushBuilder};

const WAIT: Duration = Duration::from_secs(10);

/// An application server's VAPID key.
struct Vapid {
    key: p256::ecdsa::SigningKey,
    /// `k`: the uncompressed public key, base64url.
    public: String,
}

impl Vapid {
    fn new() -> Vapid {
        let key = p256::ecdsa::SigningKey::random(&mut OsRng);
        let public = URL_SAFE_NO_PAD.encode(key.verifying_key().to_encoded_point(false));
        Vapid { key, public }
    }

    /// `vapid t=<ES256 JWT of these claims>, k=<public key>` (RFC 8292 §3).
    fn authorization(&self, claims: serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature: p256::ecdsa::Signature = self.key.sign(signed.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(signature.to_bytes());
        format!("vapid t={signed}.{signature}, k={}", self.public)
    }

    /// Valid claims for that service: its origin, 12 hours ahead, a mailto: contact.
    fn valid(&self, push: &OwnPush) -> String {
        self.authorization(serde_json::json!({
            "aud": push.origin(),
            "exp": now() + 12 * 3600,
            "sub": "mailto:ops@renkei.example",
        }))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An HTTPS client that trusts the service's certificate and nothing else.
fn client(push: &OwnPush, timeout: Duration) -> reqwest::Client {
    let certificate =
        reqwest::Certificate::from_pem(push.certificate_pem().as_bytes()).expect("PEM");
    reqwest::Client::builder()
        .add_root_certificate(certificate)
        .timeout(timeout)
        .build()
        .expect("client")
}

/// web-push-native's request for that subscription: the encrypted body and its headers
/// (TTL 12 h, Content-Encoding: aes128gcm).
fn encrypted(subscription: &PushSubscription, plaintext: &[u8]) -> (HeaderMap, Vec<u8>) {
    let key = URL_SAFE_NO_PAD
        .decode(&subscription.p256dh)
        .expect("p256dh");
    let auth = URL_SAFE_NO_PAD.decode(&subscription.auth).expect("auth");
    assert_eq!((key.len(), auth.len()), (65, 16));
    let request = WebPushBuilder::new(
        subscription.endpoint.parse().expect("endpoint"),
        web_push_native::p256::PublicKey::from_sec1_bytes(&key).expect("a P-256 point"),
        Auth::clone_from_slice(&auth),
    )
    .build(plaintext.to_vec())
    .expect("encrypted");
    let (parts, body) = request.into_parts();
    let mut headers = parts.headers;
    // reqwest sets its own from the body.
    headers.remove(CONTENT_LENGTH);
    (headers, body)
}

async fn post(
    client: &reqwest::Client,
    subscription: &PushSubscription,
    headers: HeaderMap,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(&subscription.endpoint)
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("an answer")
}

#[tokio::test]
async fn decrypts_what_another_implementation_encrypted_and_verifies_vapid() {
    let push = OwnPush::start().await.expect("push service");
    let subscription = push.subscribe();
    assert_eq!(push.host(), "127.0.0.1");
    assert_eq!(
        subscription.endpoint,
        format!("https://127.0.0.1:{}/push/{}", push.port(), subscription.id)
    );
    let vapid = Vapid::new();
    let plaintext = r#"{"title":"新着メッセージ","body":"田中さんの訪問記録が更新されました"}"#;
    let (mut headers, body) = encrypted(&subscription, plaintext.as_bytes());
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&vapid.valid(&push)).expect("ASCII"),
    );
    headers.insert("urgency", HeaderValue::from_static("high"));
    headers.insert("topic", HeaderValue::from_static("room-42_visit"));

    let answer = post(&client(&push, WAIT), &subscription, headers, body).await;
    assert_eq!(answer.status(), 201);
    let location = answer.headers().get("location").expect("Location");
    assert!(location
        .to_str()
        .expect("ASCII")
        .starts_with(&push.origin()));

    let received = push.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.subscription, Some(subscription.id));
    assert_eq!((request.status, request.refused.as_deref()), (201, None));
    assert_eq!(request.payload.as_deref(), Ok(plaintext.as_bytes()));
    let claims = request.vapid.as_ref().expect("VAPID verified");
    assert_eq!(
        (
            claims.public_key.as_str(),
            claims.aud.as_str(),
            claims.sub.as_str()
        ),
        (
            vapid.public.as_str(),
            push.origin().as_str(),
            "mailto:ops@renkei.example"
        )
    );
    assert_eq!(request.ttl, Some(12 * 3600));
    assert_eq!(request.urgency.as_deref(), Some("high"));
    assert_eq!(request.topic.as_deref(), Some("room-42_visit"));
    assert_eq!(request.content_encoding.as_deref(), Some("aes128gcm"));
}

#[tokio::test]
async fn refuses_a_signature_that_is_not_the_keys() {
    let push = OwnPush::start().await.expect("push service");
    let subscription = push.subscribe();
    let (signer, claimed) = (Vapid::new(), Vapid::new());
    // Signed by one key, presented with another's.
    let header = signer.valid(&push).replace(&signer.public, &claimed.public);
    let (mut headers, body) = encrypted(&subscription, b"hello");
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&header).expect("ASCII"),
    );

    let answer = post(&client(&push, WAIT), &subscription, headers, body).await;
    assert_eq!(answer.status(), 403);
    let received = push.wait_for(1, WAIT).await;
    let why = received[0].vapid.as_ref().expect_err("refused");
    assert!(why.contains("signature"), "{why}");
    assert!(received[0]
        .refused
        .as_deref()
        .is_some_and(|r| r.contains("VAPID")));
    // The payload was still decrypted: a test sees every fault at once.
    assert_eq!(received[0].payload.as_deref(), Ok(&b"hello"[..]));
}

#[tokio::test]
async fn refuses_wrong_claims_and_missing_vapid() {
    let push = OwnPush::start().await.expect("push service");
    let subscription = push.subscribe();
    let vapid = Vapid::new();
    let client = client(&push, WAIT);
    let claims = |aud: String, exp: u64, sub: &str| {
        vapid.authorization(serde_json::json!({ "aud": aud, "exp": exp, "sub": sub }))
    };
    let origin = push.origin();
    let cases = [
        // What web-push-native's own `with_vapid` signs: the host without the port.
        (
            Some(claims(
                "https://127.0.0.1".into(),
                now() + 3600,
                "mailto:a@b.example",
            )),
            403,
            "aud",
        ),
        (
            Some(claims(origin.clone(), now() - 1, "mailto:a@b.example")),
            403,
            "passed",
        ),
        (
            Some(claims(
                origin.clone(),
                now() + 25 * 3600,
                "mailto:a@b.example",
            )),
            403,
            "24 hours",
        ),
        (
            Some(claims(origin.clone(), now() + 3600, "ops@renkei.example")),
            403,
            "sub",
        ),
        (None, 401, "no Authorization"),
    ];
    for (authorization, status, reason) in &cases {
        let (mut headers, body) = encrypted(&subscription, b"hello");
        if let Some(authorization) = authorization {
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(authorization).expect("ASCII"),
            );
        }
        let answer = post(&client, &subscription, headers, body).await;
        assert_eq!(answer.status(), *status, "{reason}");
    }
    let received = push.wait_for(cases.len(), WAIT).await;
    for (request, (_, status, reason)) in received.iter().zip(&cases) {
        assert_eq!(request.status, *status);
        let why = request.vapid.as_ref().expect_err("refused");
        assert!(why.contains(reason), "{why} should say {reason}");
    }
}

#[tokio::test]
async fn a_subscription_made_for_a_key_refuses_another() {
    let push = OwnPush::start().await.expect("push service");
    let (own, other) = (Vapid::new(), Vapid::new());
    let subscription = push.subscribe_for(&own.public).expect("a public key");
    assert!(push.subscribe_for("not a key").is_err());
    let client = client(&push, WAIT);
    for (vapid, status) in [(&other, 403), (&own, 201)] {
        let (mut headers, body) = encrypted(&subscription, b"hello");
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&vapid.valid(&push)).expect("ASCII"),
        );
        assert_eq!(
            post(&client, &subscription, headers, body).await.status(),
            status
        );
    }
}

/// What a case changes in a valid request's headers and body.
type Change = dyn Fn(&mut HeaderMap, &mut Vec<u8>);

#[tokio::test]
async fn refuses_requests_a_push_service_would() {
    let push = OwnPush::start().await.expect("push service");
    let subscription = push.subscribe();
    let vapid = Vapid::new();
    let client = client(&push, WAIT);
    let valid = |change: &Change| {
        let (mut headers, mut body) = encrypted(&subscription, b"hello");
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&vapid.valid(&push)).expect("ASCII"),
        );
        change(&mut headers, &mut body);
        (headers, body)
    };
    let cases: [(&Change, u16, &str); 7] = [
        (&|h, _| drop(h.remove("ttl")), 400, "TTL"),
        (
            &|h, _| drop(h.insert("ttl", HeaderValue::from_static("soon"))),
            400,
            "TTL",
        ),
        (
            &|h, _| drop(h.insert("urgency", HeaderValue::from_static("urgent"))),
            400,
            "Urgency",
        ),
        (
            &|h, _| {
                drop(h.insert(
                    "topic",
                    HeaderValue::from_static("a-topic-longer-than-32-characters"),
                ))
            },
            400,
            "Topic",
        ),
        (
            &|h, _| drop(h.insert("content-encoding", HeaderValue::from_static("aesgcm"))),
            400,
            "Content-Encoding",
        ),
        (
            &|_, b| b.iter_mut().skip(90).take(1).for_each(|byte| *byte ^= 1),
            400,
            "AES-GCM",
        ),
        (&|_, b| b.resize(5000, 0), 413, "4096"),
    ];
    for (change, status, _) in &cases {
        let (headers, body) = valid(change);
        assert_eq!(
            post(&client, &subscription, headers, body).await.status(),
            *status
        );
    }
    // Another method, and a subscription this service never made.
    let answer = client
        .get(&subscription.endpoint)
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 405);
    let (headers, body) = valid(&|_, _| {});
    let unknown = client
        .post(format!("{}/push/999", push.origin()))
        .headers(headers)
        .body(body);
    assert_eq!(unknown.send().await.expect("an answer").status(), 404);

    let received = push.wait_for(cases.len() + 2, WAIT).await;
    assert_eq!(received.len(), cases.len() + 2);
    for (request, (_, status, reason)) in received.iter().zip(&cases) {
        assert_eq!(request.status, *status);
        let refused = request.refused.as_deref().unwrap_or_default();
        assert!(refused.contains(reason), "{refused:?} should say {reason}");
    }
    // The altered and the oversized body: no payload to show.
    assert!(received[5].payload.is_err() && received[6].payload.is_err());
    assert_eq!(received[0].payload.as_deref(), Ok(&b"hello"[..]));
    assert_eq!(received[cases.len()].method, "GET");
    assert_eq!(received[cases.len() + 1].subscription, None);
}

#[tokio::test]
async fn a_gone_subscription_answers_410() {
    let push = OwnPush::start().await.expect("push service");
    let subscription = push.subscribe();
    push.set_behaviour(subscription.id, Behaviour::Gone(410))
        .expect("known");
    assert!(push
        .set_behaviour(subscription.id + 1, Behaviour::Accept)
        .is_err());
    let vapid = Vapid::new();
    let (mut headers, body) = encrypted(&subscription, b"hello");
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&vapid.valid(&push)).expect("ASCII"),
    );
    let answer = post(&client(&push, WAIT), &subscription, headers, body).await;
    assert_eq!(answer.status(), 410);
    assert_eq!(push.wait_for(1, WAIT).await[0].status, 410);
}

#[tokio::test]
async fn too_many_answers_429_with_retry_after_then_accepts() {
    let push = OwnPush::start().await.expect("push service");
    let subscription = push.subscribe();
    let too_many = Behaviour::TooMany {
        retry_after_seconds: 2,
        times: 1,
    };
    push.set_behaviour(subscription.id, too_many)
        .expect("known");
    let vapid = Vapid::new();
    let client = client(&push, WAIT);
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (mut headers, body) = encrypted(&subscription, b"hello");
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&vapid.valid(&push)).expect("ASCII"),
        );
        let answer = post(&client, &subscription, headers, body).await;
        let retry_after = answer.headers().get("retry-after").cloned();
        answers.push((answer.status().as_u16(), retry_after));
    }
    assert_eq!(
        answers,
        [(429, Some(HeaderValue::from_static("2"))), (201, None)]
    );
    let statuses: Vec<u16> = push
        .wait_for(2, WAIT)
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 201]);
}

#[tokio::test]
async fn hang_never_answers() {
    let push = OwnPush::start().await.expect("push service");
    let subscription = push.subscribe();
    push.set_behaviour(subscription.id, Behaviour::Hang)
        .expect("known");
    let vapid = Vapid::new();
    let (mut headers, body) = encrypted(&subscription, b"hello");
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&vapid.valid(&push)).expect("ASCII"),
    );
    let started = std::time::Instant::now();
    let outcome = client(&push, Duration::from_secs(1))
        .post(&subscription.endpoint)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let error = outcome.expect_err("no answer");
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    // It was received, checked, and recorded as never answered.
    let received = push.wait_for(1, WAIT).await;
    assert_eq!(
        (received[0].status, received[0].refused.as_deref()),
        (0, None)
    );
    assert_eq!(received[0].payload.as_deref(), Ok(&b"hello"[..]));
}

#[tokio::test]
async fn wait_for_returns_what_there_is_at_the_timeout() {
    let push = OwnPush::start().await.expect("push service");
    let started = std::time::Instant::now();
    assert!(push
        .wait_for(1, Duration::from_millis(200))
        .await
        .is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(push.received().is_empty());
    // The subscription as a browser hands it over.
    let subscription = push.subscribe();
    let json = subscription.json();
    assert_eq!(json["endpoint"], subscription.endpoint);
    assert_eq!(json["keys"]["p256dh"], subscription.p256dh);
    assert_eq!(json["keys"]["auth"], subscription.auth);
}
