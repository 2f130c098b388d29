//! E-mail notices (SMTP, through `lettre`): content-free by construction. A mail says that
//! something waits in Renkei — a number of unread posts, an invitation, an event of one's
//! account — and where Renkei is; never a post's text, a patient's or a group's name, a
//! setup code. Queued in the database (`mails`), sent by whichever node claims them,
//! retried with backoff, and a refused address is marked for the facility's admins.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use renkei_protocol::Millis;

use crate::app::App;
use crate::config::{Config, MailServer, SmtpUrlError};
use crate::store::{ClaimedMail, DigestRule, MailKind, MailOutcome};

/// A mail server that does not answer a command within this is tried again later.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);
/// One whole mail's exchange, greeting to QUIT.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node holds claimed mails before another may take them.
const LEASE_MS: Millis = 120_000;
const CLAIM_BATCH: u32 = 32;
const MAX_ATTEMPTS: i32 = 8;
/// How often digests are looked for, once across the cluster.
const DIGEST_EVERY_MS: Millis = 60_000;

/// Why mail cannot be set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    #[error(transparent)]
    Server(#[from] SmtpUrlError),
    #[error("the sender {0:?} is not an e-mail address")]
    From(String),
    #[error("{0}")]
    Transport(String),
}

/// The SMTP transport, the sender and the address mails name.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: String,
}

impl Mailer {
    pub fn new(url: &str, config: &Config) -> Result<Mailer, MailError> {
        let server = MailServer::parse(url)?;
        let from_text = config.notify.mail_from.clone().unwrap_or_default();
        let from: Mailbox = from_text.parse().map_err(|_| MailError::From(from_text))?;
        let transport = |err: lettre::transport::smtp::Error| MailError::Transport(err.to_string());
        let builder = if server.implicit_tls {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&server.host).map_err(transport)?
        } else if server.loopback {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&server.host).map_err(transport)?
        };
        let mut builder = builder.port(server.port).timeout(Some(SMTP_TIMEOUT));
        if let Some((user, password)) = server.credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            public_url: config.public_url(),
        })
    }
}

/// A mail's subject and body: fixed sentences, a count and the server's address.
pub fn compose(kind: MailKind, count: Option<i64>, url: &str) -> (String, String) {
    let footer = format!(
        "\n\nRenkei: {url}\n\n\
         このメールは送信専用です。通知の設定はRenkeiのアカウント画面で変更できます。\n\
         This is an automatic message. Change your notification settings in Renkei's account screen."
    );
    let (subject, body) = match kind {
        MailKind::Digest => {
            let n = count.unwrap_or(0);
            (
                format!("Renkeiに未読のメッセージが {n} 件あります"),
                format!(
                    "Renkeiに未読のメッセージが {n} 件あります。内容はRenkeiにログインしてご確認ください。\n\
                     You have {n} unread messages in Renkei. Log in to read them."
                ),
            )
        }
        MailKind::Invitation => (
            "Renkeiでグループへの招待があります".to_string(),
            "Renkeiで、あなたの返答または承認を待っているグループへの招待があります。ログインしてご確認ください。\n\
             An invitation to a group is waiting for your answer or approval in Renkei. Log in to see it."
                .to_string(),
        ),
        MailKind::SetupCode => (
            "Renkeiの初回設定コードが発行されました".to_string(),
            "管理者があなたのRenkeiアカウントの初回設定コードを発行しました。コードは管理者から直接受け取り、パスワードを設定してください。心当たりがない場合は管理者に連絡してください。\n\
             An administrator issued a setup code for your Renkei account. Get the code from them in person and set your password. If you did not expect this, contact your administrator."
                .to_string(),
        ),
        MailKind::Locked => (
            "Renkeiのアカウントが一時的にロックされました".to_string(),
            "ログインの失敗が続いたため、あなたのRenkeiアカウントは一時的にロックされました。心当たりがない場合は管理者に連絡してください。\n\
             Your Renkei account was locked for a while after repeated failed logins. If this was not you, contact your administrator."
                .to_string(),
        ),
        MailKind::PasswordReset => (
            "Renkeiのパスワードがリセットされました".to_string(),
            "管理者があなたのRenkeiのパスワードをリセットし、すべてのセッションを終了しました。新しい設定コードは管理者から受け取ってください。\n\
             An administrator reset your Renkei password and ended all your sessions. Get the new setup code from them."
                .to_string(),
        ),
        MailKind::FacilityApplied => (
            "Renkeiに新しい利用申請が届きました".to_string(),
            "Renkeiに事業所からの新しい利用申請（様式1）が届きました。ログインして管理画面の事業所タブでご確認ください。\n\
             A facility has applied to join Renkei. Log in and see the Facilities tab of the admin screen."
                .to_string(),
        ),
        MailKind::Test => (
            "Renkeiのテスト通知です".to_string(),
            "これはRenkeiのテスト通知です。メールでの通知が届いています。\n\
             This is a test notification from Renkei: e-mail notices reach you."
                .to_string(),
        ),
    };
    (subject, body + &footer)
}

/// Starts the mail sender and the digest job, when a mail server is configured.
pub fn spawn(app: Arc<App>) {
    if app.notices.mailer.is_none() {
        return;
    }
    tokio::spawn(send_loop(Arc::clone(&app)));
    tokio::spawn(digest_loop(app));
}

/// Queues digests once per `DIGEST_EVERY_MS` across the cluster (a row of `jobs`).
async fn digest_loop(app: Arc<App>) {
    let tick = Duration::from_millis(u64::from(app.config.notify.tick_ms));
    loop {
        let now = app.config.clock.now();
        match app
            .store
            .claim_job("mail_digest", now, DIGEST_EVERY_MS)
            .await
        {
            Ok(true) => {
                let notify = &app.config.notify;
                let rule = DigestRule {
                    now,
                    older_than: now - i64::from(notify.email_after_minutes) * 60_000,
                    interval_since: now - i64::from(notify.email_interval_minutes) * 60_000,
                    minute_of_day: renkei_domain::clock::japan_minute_of_day(now),
                };
                match app.store.queue_digests(rule).await {
                    Ok(0) => {}
                    Ok(_) => app.notices.wake_mailer.notify_one(),
                    Err(err) => tracing::warn!(error = %err, "digests not queued"),
                }
                app.metrics.digest_runs.inc();
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "cannot claim the digest job"),
        }
        tokio::select! {
            () = app.shutdown.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}

async fn send_loop(app: Arc<App>) {
    let tick = Duration::from_millis(u64::from(app.config.notify.tick_ms));
    loop {
        loop {
            let now = app.config.clock.now();
            match app
                .store
                .claim_mails(now, now + LEASE_MS, CLAIM_BATCH)
                .await
            {
                Ok(claimed) if claimed.is_empty() => break,
                Ok(claimed) => {
                    for mail in claimed {
                        send(&app, mail).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot claim mails");
                    break;
                }
            }
        }
        tokio::select! {
            () = app.shutdown.cancelled() => return,
            () = app.notices.wake_mailer.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
}

/// Sends one mail and records how it ended. The log names the mail's id and kind only.
async fn send(app: &App, mail: ClaimedMail) {
    let Some(mailer) = &app.notices.mailer else {
        return;
    };
    let outcome = match deliver(mailer, &mail).await {
        Ok(()) => MailOutcome::Sent,
        Err(Failure::Refused(detail)) => MailOutcome::Refused { detail },
        Err(Failure::Transient(detail)) if mail.attempts >= MAX_ATTEMPTS => {
            MailOutcome::GaveUp { detail }
        }
        Err(Failure::Transient(detail)) => {
            // 30 s, 1 min, 2 min … up to an hour.
            let wait = renkei_domain::clock::backoff(
                mail.attempts,
                Duration::from_secs(30),
                Duration::from_secs(3600),
            );
            MailOutcome::Retry {
                at: app.config.clock.now()
                    + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
                detail,
            }
        }
    };
    let label = match &outcome {
        MailOutcome::Sent => "sent",
        MailOutcome::Retry { .. } => "retry",
        MailOutcome::Refused { .. } => "refused",
        MailOutcome::GaveUp { .. } => "gave_up",
    };
    app.metrics.count_mail(label);
    if !matches!(outcome, MailOutcome::Sent) {
        tracing::warn!(
            mail = mail.id,
            kind = mail.kind.name(),
            outcome = label,
            "mail not delivered"
        );
    }
    if let Err(err) = app
        .store
        .finish_mail(&mail, &outcome, app.config.clock.now())
        .await
    {
        tracing::warn!(mail = mail.id, error = %err, "cannot record a mail's outcome");
    }
}

enum Failure {
    /// The server refused the address or the message for good (5xx), or the address is
    /// not one.
    Refused(String),
    /// Worth another try: a 4xx answer, a timeout, a connection or TLS failure.
    Transient(String),
}

async fn deliver(mailer: &Mailer, mail: &ClaimedMail) -> Result<(), Failure> {
    let to: Mailbox = mail
        .address
        .parse()
        .map_err(|_| Failure::Refused("not an e-mail address".into()))?;
    let (subject, body) = compose(mail.kind, mail.count, &mailer.public_url);
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|_| Failure::Refused("message".into()))?;
    // lettre's own timeout bounds the connection but not a server that accepts and then
    // says nothing: the whole exchange is bounded here.
    let sent = tokio::time::timeout(SEND_TIMEOUT, mailer.transport.send(message))
        .await
        .map_err(|_| Failure::Transient("timeout".into()))?;
    match sent {
        Ok(_) => Ok(()),
        Err(err) if err.is_permanent() => Err(Failure::Refused(match err.status() {
            Some(code) => format!("refused: {code}"),
            None => "refused".into(),
        })),
        Err(err) if err.is_timeout() => Err(Failure::Transient("timeout".into())),
        Err(err) => Err(Failure::Transient(match err.status() {
            Some(code) => format!("status {code}"),
            None => "connection".into(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mails_carry_no_content_only_a_count_and_the_address() {
        let (subject, body) = compose(MailKind::Digest, Some(3), "https://renkei.example.jp");
        assert_eq!(subject, "Renkeiに未読のメッセージが 3 件あります");
        assert!(body.contains("https://renkei.example.jp"));
        for kind in [
            MailKind::Invitation,
            MailKind::SetupCode,
            MailKind::Locked,
            MailKind::PasswordReset,
            MailKind::Test,
            MailKind::FacilityApplied,
        ] {
            let (subject, body) = compose(kind, None, "https://r.example.jp");
            assert!(subject.starts_with("Renkei"), "{subject}");
            assert!(body.contains("https://r.example.jp"));
        }
    }
}
