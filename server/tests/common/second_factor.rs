//! The second factor as a user's authenticator app sees it: the secret of the setup
//! answer, the codes it shows, and a setup from start to end.

use serde_json::json;

use super::{code, Api};

/// RFC 4648 base32 (as the setup answer gives the secret), decoded.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let mut bits: u64 = 0;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {c}"),
        };
        bits = (bits << 5) | u64::from(value);
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// RFC 4648 base32 without padding, as an authenticator app is given the secret.
pub fn base32_encode(secret: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut bits: u64 = 0;
    let mut count = 0;
    for &b in secret {
        bits = (bits << 8) | u64::from(b);
        count += 8;
        while count >= 5 {
            count -= 5;
            out.push(char::from(ALPHABET[((bits >> count) & 31) as usize]));
        }
    }
    out
}

/// The authenticator app: the code of `secret`, `steps` time steps from now.
pub fn totp(secret: &[u8], steps: i64) -> String {
    use renkei::two_factor::{code_at, step_of};
    code_at(secret, step_of(renkei_domain::clock::now_ms()) + steps)
}

/// Sets up a second factor in the session of `api`; returns its secret and recovery codes.
pub async fn enroll(api: &Api) -> (Vec<u8>, Vec<String>) {
    let (status, setup) = api.post("/api/v1/session/two-factor", json!({})).await;
    assert_eq!(status, 200, "{setup}");
    let uri = setup["uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/Renkei:"), "{uri}");
    let secret = base32_decode(setup["secret"].as_str().expect("secret"));
    assert_eq!(secret.len(), 20);
    let (status, body) = api
        .put("/api/v1/session/two-factor", json!({"code": "000000"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (400, "invalid_credentials"),
        "a wrong code"
    );
    let (status, codes) = api
        .put(
            "/api/v1/session/two-factor",
            json!({"code": totp(&secret, 0)}),
        )
        .await;
    assert_eq!(status, 200, "{codes}");
    let codes: Vec<String> = codes["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}
