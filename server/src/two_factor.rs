//! Two-factor authentication (二要素認証): TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second
//! steps) with one-time recovery codes. Required for the operator and admins by default
//! (`RENKEI_TWO_FACTOR`), optional for staff or required for everyone. A code is accepted
//! once: the last accepted time step is stored, and a code of that step or an earlier one
//! is refused, on every node. A lost authenticator is answered by a recovery code, or by an
//! admin's password reset, which removes the second factor with the password. Secrets are
//! stored encrypted under the key of `RENKEI_SECRET_KEY_FILE` (`secret`), bound to their
//! account.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use renkei_domain::password;
use renkei_protocol::api::{
    RecoveryCodes, TwoFactorConfirm, TwoFactorDisable, TwoFactorSetup, TwoFactorStatus,
};
use renkei_protocol::{ErrorCode, UserId};

use crate::app::App;
use crate::http::HttpError;
use crate::session;
use crate::session::AnySession;
use renkei_domain::clock;

/// Seconds per step, digits per code, and steps of clock drift accepted either way.
const STEP_SECONDS: i64 = 30;
const DIGITS: u32 = 6;
const DRIFT_STEPS: i64 = 1;
/// Recovery codes given at once.
const RECOVERY_CODES: usize = 10;

/// The TOTP code of `secret` at time step `step` (RFC 4226 §5.3 truncation).
pub fn code_at(secret: &[u8], step: i64) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(DIGITS),
        width = DIGITS as usize
    )
}

/// The time step of a moment in milliseconds.
pub fn step_of(ms: i64) -> i64 {
    ms.div_euclid(1000 * STEP_SECONDS)
}

/// The step within the drift window at `now` whose code is `code`, if any.
fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let current = step_of(now);
    (current - DRIFT_STEPS..=current + DRIFT_STEPS).find(|step| {
        let expected = code_at(secret, *step);
        // Constant-time enough for six digits compared once per throttled attempt.
        expected.len() == code.len()
            && expected
                .bytes()
                .zip(code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut buffer = [0u8; 5];
        buffer[..chunk.len()].copy_from_slice(chunk);
        let bits = u64::from_be_bytes([
            0, 0, 0, buffer[0], buffer[1], buffer[2], buffer[3], buffer[4],
        ]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            let index = (bits >> (35 - i * 5)) & 0x1f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// New recovery codes: 10 characters of base32 each (50 bits), shown as `xxxxx-xxxxx`.
fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 7];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let text = base32(&bytes).to_lowercase();
            format!("{}-{}", &text[..5], &text[5..10])
        })
        .collect()
}

/// The TOTP secret of `user` from its stored, encrypted form. One that does not open (a
/// node with another key file, an altered row) is an error the operator must fix: logged
/// with why, never with the secret, and answered as an internal error, not as a wrong code.
fn open_secret(app: &App, user: UserId, sealed: &[u8]) -> Result<Vec<u8>, HttpError> {
    app.secrets.open_totp(user, sealed).map_err(|err| {
        tracing::error!(user, error = %err, "cannot open the account's TOTP secret");
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the second factor cannot be checked on this server: tell the operator",
        )
    })
}

/// Checks a login's second factor: a TOTP code not used before, or an unused recovery
/// code (then used up). `sealed` is the secret as stored (encrypted).
pub async fn accept(app: &App, user: UserId, sealed: &[u8], code: &str) -> Result<bool, HttpError> {
    let code = code.trim();
    if code.len() == DIGITS as usize && code.bytes().all(|b| b.is_ascii_digit()) {
        let secret = open_secret(app, user, sealed)?;
        let Some(step) = matching_step(&secret, code, clock::now_ms()) else {
            return Ok(false);
        };
        // Refused when this step or a later one was accepted already: no replay.
        return Ok(app.store.use_totp_step(user, step).await?);
    }
    let typed = normalize(code);
    if typed.is_empty() || typed.len() > 32 {
        return Ok(false);
    }
    Ok(app
        .store
        .use_recovery_code(user, &session::token_hash(&typed), clock::now_ms())
        .await?)
}

/// `text` as a QR code in SVG: medium error correction, 8-pixel modules with the quiet
/// zone, so a phone's camera reads it off a screen. No external service sees the secret.
fn qr_svg(text: &str) -> Result<String, HttpError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| {
            // Only a text beyond a QR code's capacity (~2 KB) fails; logins are far shorter.
            tracing::error!(error = %e, "the setup URI does not fit a QR code");
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error: nothing was changed",
            )
        })?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .module_dimensions(8, 8)
        .quiet_zone(true)
        .build())
}

/// `GET /api/v1/session/two-factor`.
pub async fn status(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
) -> Result<Json<TwoFactorStatus>, HttpError> {
    let user = &session.user;
    let (enabled, recovery_codes_left) = app.store.two_factor(user.id).await?;
    Ok(Json(TwoFactorStatus {
        enabled,
        required: app.config.two_factor.applies_to(user.role),
        recovery_codes_left,
    }))
}

/// `POST /api/v1/session/two-factor`: a new secret, pending until a code confirms it.
pub async fn start(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
) -> Result<Json<TwoFactorSetup>, HttpError> {
    let user = &session.user;
    if app.store.two_factor(user.id).await?.0 {
        return Err(HttpError::conflict(
            "a second factor is set up already: turn it off first",
        ));
    }
    let mut secret = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    app.store
        .start_totp(user.id, &app.secrets.seal_totp(user.id, &secret))
        .await?;
    let secret = base32(&secret);
    let label: String = user
        .login
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let uri = format!(
        "otpauth://totp/Renkei:{label}?secret={secret}&issuer=Renkei&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}"
    );
    let qr_svg = qr_svg(&uri)?;
    Ok(Json(TwoFactorSetup {
        secret,
        uri,
        qr_svg,
    }))
}

/// `PUT /api/v1/session/two-factor`: a code confirms the pending secret, which takes
/// effect; the answer holds the recovery codes, shown this once.
pub async fn confirm(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
    body: Result<Json<TwoFactorConfirm>, JsonRejection>,
) -> Result<Json<RecoveryCodes>, HttpError> {
    let Json(TwoFactorConfirm { code }) = body?;
    let user = session.user.id;
    let pending = app
        .store
        .pending_totp(user)
        .await?
        .ok_or_else(|| HttpError::conflict("no second factor is being set up"))?;
    let secret = open_secret(&app, user, &pending)?;
    let Some(step) = matching_step(&secret, code.trim(), clock::now_ms()) else {
        return Err(wrong_code());
    };
    let codes = new_recovery_codes();
    let hashes: Vec<Vec<u8>> = codes
        .iter()
        .map(|c| session::token_hash(&normalize(c)))
        .collect();
    // The pending secret as stored (encrypted) moves into use as it is.
    app.store.enable_totp(user, &pending, step, &hashes).await?;
    tracing::info!(user, "second factor set up");
    Ok(Json(RecoveryCodes { codes }))
}

/// `DELETE /api/v1/session/two-factor`: turns it off, given the password, unless the
/// caller's role requires it.
pub async fn disable(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
    body: Result<Json<TwoFactorDisable>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(TwoFactorDisable { password }) = body?;
    let user = &session.user;
    if app.config.two_factor.applies_to(user.role) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "a second factor is required for your role",
        ));
    }
    if password.len() > password::MAX_BYTES {
        return Err(HttpError::bad_request("password too long"));
    }
    let state = app.store.password_state(user.id).await?;
    let hash = state.as_ref().map(|s| s.hash.as_str());
    if !app.passwords.verify(hash, &password).await?.matched {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::InvalidCredentials,
            "the password is wrong",
        ));
    }
    app.store.disable_totp(user.id).await?;
    tracing::info!(user = user.id, "second factor turned off");
    Ok(StatusCode::NO_CONTENT)
}

fn wrong_code() -> HttpError {
    HttpError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidCredentials,
        "the code does not match: check the app's clock and try the next code",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (the last 6 of the 8 digits given there).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (seconds, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                code_at(secret, step_of(seconds * 1000)),
                eight[2..],
                "{seconds}"
            );
        }
    }

    #[test]
    fn codes_match_within_one_step_of_drift() {
        let secret = b"12345678901234567890";
        let now = 1_234_567_890_000;
        let step = step_of(now);
        for drift in [-1, 0, 1] {
            let code = code_at(secret, step + drift);
            assert_eq!(matching_step(secret, &code, now), Some(step + drift));
        }
        assert_eq!(matching_step(secret, &code_at(secret, step + 2), now), None);
        assert_eq!(matching_step(secret, "12345", now), None);
    }

    #[test]
    fn base32_as_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }

    #[test]
    fn recovery_codes_are_distinct_and_typed_loosely() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        assert!(codes
            .iter()
            .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'));
        assert_eq!(normalize(" ABCDE-fghij "), "abcdefghij");
    }
}
