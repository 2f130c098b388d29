//! Notices (通知): who is told of what, when they are not looking at the page.
//!
//! A follower on every node turns the events committed to each group into notices: the
//! members who have no visible page, have push on, have not muted the group and are outside
//! their quiet hours (夜間は通知しない) get one push per group per coalescing window
//! (`RENKEI_PUSH_COALESCE_SECONDS`), a mention breaking through a window of plain posts.
//! Each group's cursor moves in the same transaction that writes its notices, so a notice
//! is derived once across the cluster and a killed node loses none. Invitations and account
//! events are told directly ([`tell`]). `push` and `mail` send what is queued; the
//! settings, mutes and the test live here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use renkei_domain::policy::Action;
use renkei_protocol::api::{
    MuteRequest, NoticeKind, NotificationSettings, NotificationSettingsUpdate, QuietHours,
    TestNotification,
};
use renkei_protocol::{ErrorCode, GroupId, Millis, Seq, UserId};
use tokio::sync::Notify;

use crate::app::App;
use crate::config::Config;
use crate::http::{HttpError, Id};
use crate::mail::Mailer;
use crate::push::{Sender, VapidKey};
use crate::session::Caller;
use crate::store::{
    MailKind, NewActivity, NewNotice, NoticeCandidate, NoticeSettingsRecord, QuietMinutes, Store,
};

/// Groups the follower takes per round.
const BACKLOG_BATCH: u32 = 1024;
/// The least time between two rounds of the follower: each round is one write
/// transaction, which on SQLite waits its turn with the sequencer's commits. At 100 ms the
/// A/B of target 2 showed the posts' p50 up by 0.7 ms; pushes coalesce by the minute, so
/// half a second more before one is sent costs nothing a person would notice.
const ROUND_GAP: Duration = Duration::from_millis(500);
/// How long a node's word on visible pages counts without its heartbeat being renewed,
/// and how often it is renewed.
const PRESENCE_MS: Millis = 30_000;
const PRESENCE_RENEW: Duration = Duration::from_secs(10);

/// What the notification tasks of a node share.
pub struct Notifications {
    pub vapid: VapidKey,
    pub sender: Sender,
    /// `None` when no mail server is configured: nothing is mailed.
    pub mailer: Option<Mailer>,
    /// Woken by the sequencer after a commit.
    pub committed: Arc<Notify>,
    /// Woken when deliveries were queued.
    pub wake_sender: Notify,
    /// Woken when mails were queued.
    pub wake_mailer: Notify,
    /// This process's name in `presence`: random per start, so a restarted node does not
    /// inherit (or erase) what a dead one wrote.
    pub node: String,
}

/// Why notifications could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("push: {0}")]
    Push(#[from] crate::push::PushError),
    #[error("mail: {0}")]
    Mail(#[from] crate::mail::MailError),
}

impl Notifications {
    pub async fn new(
        config: &Config,
        store: &dyn Store,
        committed: Arc<Notify>,
    ) -> Result<Notifications, NoticeError> {
        let mailer = match &config.notify.smtp_url {
            Some(url) => Some(Mailer::new(url, config)?),
            None => None,
        };
        Ok(Notifications {
            vapid: VapidKey::load(config, store).await?,
            sender: Sender::new(&config.notify)?,
            mailer,
            committed,
            wake_sender: Notify::new(),
            wake_mailer: Notify::new(),
            node: crate::session::random_token(),
        })
    }
}

/// Starts the follower, the presence writer, the push sender and the mail tasks.
pub fn spawn(app: Arc<App>) {
    tokio::spawn(follow(Arc::clone(&app)));
    tokio::spawn(presence(Arc::clone(&app)));
    crate::push::spawn_sender(Arc::clone(&app));
    crate::mail::spawn(app);
}

/// Whether `minute` falls in quiet hours `[start, end)`, across midnight when `end` is
/// earlier than `start`.
pub fn in_quiet_hours(quiet: Option<QuietMinutes>, minute: i32) -> bool {
    match quiet {
        Some((start, end)) if start < end => minute >= start && minute < end,
        Some((start, end)) => minute >= start || minute < end,
        None => false,
    }
}

/// The notices a group's new activity brings, for members who may be pushed now.
pub fn plan(
    group: GroupId,
    activity: &NewActivity,
    candidates: &[NoticeCandidate],
    now: Millis,
    coalesce_ms: Millis,
) -> Vec<NewNotice> {
    let minute = renkei_domain::clock::japan_minute_of_day(now);
    let recent = |at: Option<Millis>| at.is_some_and(|at| now - at < coalesce_ms);
    let mut notices = Vec::new();
    for candidate in candidates {
        if in_quiet_hours(candidate.quiet, minute) {
            continue;
        }
        let others: Vec<Seq> = activity
            .posts
            .iter()
            .filter(|(_, author)| *author != candidate.user)
            .map(|(seq, _)| *seq)
            .collect();
        let Some(&newest) = others.iter().max() else {
            continue;
        };
        let mentioned = activity
            .mentions
            .iter()
            .filter(|(seq, user)| *user == candidate.user && others.contains(seq))
            .map(|(seq, _)| *seq)
            .max();
        let kind = match mentioned {
            Some(_) if !recent(candidate.last_mention_notice) => NoticeKind::Mention,
            _ if recent(candidate.last_post_notice) || recent(candidate.last_mention_notice) => {
                continue
            }
            _ => NoticeKind::Post,
        };
        notices.push(NewNotice {
            user: candidate.user,
            kind,
            group: Some(group),
            seq: Some(newest),
            subscriptions: candidate.subscriptions.clone(),
        });
    }
    notices
}

/// Turns committed events into notices until shutdown: woken by commits on this node,
/// and every tick for those of other nodes. Under a stream of posts, rounds come at most
/// every `ROUND_GAP`, each taking every group with new events at once: a handful of
/// statements per round, whatever the rate.
async fn follow(app: Arc<App>) {
    let tick = Duration::from_millis(u64::from(app.config.notify.tick_ms));
    loop {
        match follow_once(&app).await {
            Ok(0) => {}
            Ok(_) => app.notices.wake_sender.notify_one(),
            Err(err) => tracing::warn!(error = %err, "notices not derived this round"),
        }
        tokio::select! {
            () = app.shutdown.cancelled() => return,
            () = app.notices.committed.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
        tokio::select! {
            () = app.shutdown.cancelled() => return,
            () = tokio::time::sleep(ROUND_GAP.min(tick)) => {}
        }
    }
}

/// One round over the backlog; how many notices were written.
async fn follow_once(app: &App) -> Result<usize, crate::store::StoreError> {
    let coalesce_ms = i64::from(app.config.notify.push_coalesce_seconds) * 1000;
    let moves = app.store.notice_backlog(BACKLOG_BATCH).await?;
    if moves.is_empty() {
        return Ok(0);
    }
    let now = app.config.clock.now();
    let activity = app.store.new_activity(&moves).await?;
    let groups: Vec<GroupId> = activity.iter().map(|(group, _)| *group).collect();
    let idle_since = crate::session::idle_since(&app.config, now);
    let candidates = app
        .store
        .notice_candidates(&groups, now, idle_since)
        .await?;
    let mut notices = Vec::new();
    for (group, found) in &activity {
        let members: Vec<NoticeCandidate> = candidates
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, candidate)| candidate.clone())
            .collect();
        notices.extend(plan(*group, found, &members, now, coalesce_ms));
    }
    let moved = app.store.commit_notices(&moves, &notices, now).await?;
    Ok(notices
        .iter()
        .filter(|n| n.group.is_some_and(|g| moved.contains(&g)))
        .count())
}

/// Tells `user` of an invitation or an account event: a push to their devices (their
/// settings and quiet hours permitting) and, with a mail server, a content-free mail.
/// Failures are logged: the event itself has happened either way.
pub async fn tell(app: &App, user: UserId, kind: NoticeKind, mail: Option<MailKind>) {
    if let Err(err) = try_tell(app, user, kind, mail).await {
        tracing::warn!(user, error = %err, "notice not queued");
    }
}

async fn try_tell(
    app: &App,
    user: UserId,
    kind: NoticeKind,
    mail: Option<MailKind>,
) -> Result<(u32, bool), crate::store::StoreError> {
    let now = app.config.clock.now();
    let idle_since = crate::session::idle_since(&app.config, now);
    let settings = app.store.notice_settings(user, now, idle_since).await?;
    let quiet = kind != NoticeKind::Test
        && in_quiet_hours(
            settings.quiet,
            renkei_domain::clock::japan_minute_of_day(now),
        );
    let mut pushed = 0;
    if settings.push && !quiet {
        let subscriptions = settings.subscriptions.clone();
        pushed = u32::try_from(subscriptions.len()).unwrap_or(u32::MAX);
        if !subscriptions.is_empty() {
            let notice = NewNotice {
                user,
                kind,
                group: None,
                seq: None,
                subscriptions,
            };
            app.store.create_notice(&notice, now).await?;
            app.notices.wake_sender.notify_one();
        }
    }
    let mailed = match mail {
        Some(mail) if app.notices.mailer.is_some() && mail_wanted(mail, &settings) => {
            app.store.create_mail(user, mail, None, now).await?;
            app.notices.wake_mailer.notify_one();
            true
        }
        _ => false,
    };
    Ok((pushed, mailed))
}

/// Security notices about one's own account go out whatever the setting; the rest only
/// with e-mail on.
fn mail_wanted(mail: MailKind, settings: &NoticeSettingsRecord) -> bool {
    match mail {
        MailKind::Locked | MailKind::PasswordReset | MailKind::SetupCode => true,
        MailKind::Digest | MailKind::Invitation | MailKind::Test | MailKind::FacilityApplied => {
            settings.email
        }
    }
}

/// Keeps this node's rows of `presence` true: which users have a visible page here,
/// written when that changes (a socket opened, hid, showed or closed), and this node's
/// heartbeat, renewed before it expires. A steady node writes one row per renewal, however
/// many people look at the app.
async fn presence(app: Arc<App>) {
    let mut written: HashSet<UserId> = HashSet::new();
    loop {
        let visible: HashSet<UserId> = app.hub.visible_users().into_iter().collect();
        let shown: Vec<UserId> = visible.difference(&written).copied().collect();
        let hidden: Vec<UserId> = written.difference(&visible).copied().collect();
        let now = app.config.clock.now();
        match app
            .store
            .set_presence(&app.notices.node, &shown, &hidden, now + PRESENCE_MS, now)
            .await
        {
            Ok(()) => written = visible,
            Err(err) => tracing::warn!(error = %err, "presence not written"),
        }
        tokio::select! {
            () = app.shutdown.cancelled() => break,
            () = app.hub.visibility_changed.notified() => {}
            () = tokio::time::sleep(PRESENCE_RENEW) => {}
        }
    }
    // Leaving: nobody here is looking any more.
    let gone: Vec<UserId> = written.into_iter().collect();
    let now = app.config.clock.now();
    let _ = app
        .store
        .set_presence(&app.notices.node, &[], &gone, now, now)
        .await;
}

/// `HH:MM` as minutes after midnight.
fn parse_time(text: &str) -> Option<i32> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    ((0..24).contains(&hours) && (0..60).contains(&minutes)).then_some(hours * 60 + minutes)
}

fn format_time(minutes: i32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Quiet hours from the wire: two different valid times.
pub fn quiet_minutes(quiet: &QuietHours) -> Result<QuietMinutes, HttpError> {
    let refuse = |message: &str| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidQuietHours,
            message.to_string(),
        )
    };
    let start = parse_time(&quiet.start).ok_or_else(|| refuse("start must be HH:MM"))?;
    let end = parse_time(&quiet.end).ok_or_else(|| refuse("end must be HH:MM"))?;
    if start == end {
        return Err(refuse("quiet hours must start and end at different times"));
    }
    Ok((start, end))
}

async fn settings_of(app: &App, caller: &Caller) -> Result<NotificationSettings, HttpError> {
    let now = app.config.clock.now();
    let record = app
        .store
        .notice_settings(
            caller.user.id,
            now,
            crate::session::idle_since(&app.config, now),
        )
        .await?;
    Ok(NotificationSettings {
        push: record.push,
        email: record.email,
        quiet_hours: record.quiet.map(|(start, end)| QuietHours {
            start: format_time(start),
            end: format_time(end),
        }),
        muted_groups: record.muted,
        email_available: app.notices.mailer.is_some(),
        email_address: caller.user.login.clone(),
        email_bounced: record.bounced,
        push_subscriptions: u32::try_from(record.subscriptions.len()).unwrap_or(u32::MAX),
    })
}

/// `GET /api/v1/notifications/settings`.
pub async fn settings(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Json<NotificationSettings>, HttpError> {
    Ok(Json(settings_of(&app, &caller).await?))
}

/// `PUT /api/v1/notifications/settings`.
pub async fn update_settings(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Json<NotificationSettingsUpdate>, JsonRejection>,
) -> Result<Json<NotificationSettings>, HttpError> {
    let Json(update) = body?;
    let quiet = update.quiet_hours.as_ref().map(quiet_minutes).transpose()?;
    app.store
        .set_notice_settings(caller.user.id, update.push, update.email, quiet)
        .await?;
    Ok(Json(settings_of(&app, &caller).await?))
}

/// `PUT /api/v1/groups/{id}/mute`.
pub async fn mute(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(group): Id,
    body: Result<Json<MuteRequest>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(request) = body?;
    let (_, facts) = crate::group::target(&app, &caller, group).await?;
    caller.may(Action::MuteGroup(facts))?;
    app.store
        .set_group_muted(caller.user.id, group, request.muted)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/notifications/test`: a push to each of one's devices (even in quiet
/// hours: one asked for it) and a mail, as one's settings allow.
pub async fn test(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<(StatusCode, Json<TestNotification>), HttpError> {
    let (push, email) =
        try_tell(&app, caller.user.id, NoticeKind::Test, Some(MailKind::Test)).await?;
    Ok((StatusCode::ACCEPTED, Json(TestNotification { push, email })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(user: UserId) -> NoticeCandidate {
        NoticeCandidate {
            user,
            quiet: None,
            subscriptions: vec![user * 10],
            last_post_notice: None,
            last_mention_notice: None,
        }
    }

    /// 2026-12-02 12:00 JST.
    const NOON: Millis = 1_796_180_400_000;

    #[test]
    fn quiet_hours_may_cross_midnight() {
        let night = Some((22 * 60, 7 * 60));
        assert!(in_quiet_hours(night, 23 * 60));
        assert!(in_quiet_hours(night, 3 * 60));
        assert!(!in_quiet_hours(night, 7 * 60));
        assert!(!in_quiet_hours(night, 12 * 60));
        let lunch = Some((12 * 60, 13 * 60));
        assert!(in_quiet_hours(lunch, 12 * 60 + 30));
        assert!(!in_quiet_hours(lunch, 13 * 60));
        assert!(!in_quiet_hours(None, 0));
    }

    #[test]
    fn members_other_than_the_author_get_one_notice_for_the_newest_post() {
        let activity = NewActivity {
            posts: vec![(4, 1), (5, 2), (6, 1)],
            mentions: vec![],
        };
        let notices = plan(
            9,
            &activity,
            &[candidate(1), candidate(2), candidate(3)],
            NOON,
            60_000,
        );
        let summary: Vec<_> = notices.iter().map(|n| (n.user, n.kind, n.seq)).collect();
        // User 1 wrote 4 and 6: told of 5; user 2 of 6; user 3 of 6.
        assert_eq!(
            summary,
            vec![
                (1, NoticeKind::Post, Some(5)),
                (2, NoticeKind::Post, Some(6)),
                (3, NoticeKind::Post, Some(6))
            ]
        );
        assert_eq!(notices[0].subscriptions, vec![10]);
        // Only their own posts: nothing.
        let own = NewActivity {
            posts: vec![(7, 1)],
            mentions: vec![],
        };
        assert!(plan(9, &own, &[candidate(1)], NOON, 60_000).is_empty());
    }

    #[test]
    fn one_push_per_window_but_a_mention_breaks_through() {
        let mut told = candidate(3);
        told.last_post_notice = Some(NOON - 30_000);
        let post = NewActivity {
            posts: vec![(8, 1)],
            mentions: vec![],
        };
        assert!(plan(9, &post, std::slice::from_ref(&told), NOON, 60_000).is_empty());
        // After the window: told again.
        assert_eq!(
            plan(9, &post, std::slice::from_ref(&told), NOON + 31_000, 60_000).len(),
            1
        );
        let mention = NewActivity {
            posts: vec![(8, 1)],
            mentions: vec![(8, 3)],
        };
        let notices = plan(9, &mention, std::slice::from_ref(&told), NOON, 60_000);
        assert_eq!(notices[0].kind, NoticeKind::Mention);
        // A mention within the window of a mention: nothing more.
        told.last_mention_notice = Some(NOON - 1_000);
        assert!(plan(9, &mention, &[told], NOON, 60_000).is_empty());
    }

    #[test]
    fn quiet_hours_hold_pushes() {
        let mut sleeping = candidate(3);
        sleeping.quiet = Some((11 * 60, 13 * 60));
        let post = NewActivity {
            posts: vec![(8, 1)],
            mentions: vec![(8, 3)],
        };
        assert!(plan(9, &post, &[sleeping], NOON, 60_000).is_empty());
    }

    #[test]
    fn times_are_checked() {
        let quiet = |start: &str, end: &str| {
            quiet_minutes(&QuietHours {
                start: start.into(),
                end: end.into(),
            })
        };
        assert_eq!(quiet("22:00", "07:30").ok(), Some((1320, 450)));
        for (start, end) in [
            ("24:00", "07:00"),
            ("7:00", "08:00"),
            ("22:00", "22:00"),
            ("ab:cd", "01:00"),
            ("23:60", "01:00"),
        ] {
            assert_eq!(
                quiet(start, end).err().map(|e| e.code()),
                Some(ErrorCode::InvalidQuietHours),
                "{start}-{end}"
            );
        }
    }
}
