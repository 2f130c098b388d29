//! The storage conformance suite: one set of behaviours, run unchanged against SQLite and
//! PostgreSQL.

mod common;

use std::sync::Arc;

use common::{Backend, TestDb};
use renkei::store::{
    AppendOutcome, EventBody, NewFacility, NewFile, NewGroup, NewPost, NewSession, NewUser, Store,
    StoreError, UserRecord,
};
use renkei_protocol::api::FacilityKind;
use renkei_protocol::{GroupKind, Role};

on_both_backends!(
    users_and_credentials,
    sessions_expire_and_end,
    passwords_history_and_locks,
    directory_holds_groups_and_members,
    posts_get_consecutive_sequences,
    idempotent_client_ids,
    archived_and_unknown_groups_take_nothing,
    reading_after_and_before,
    one_batch_mixes_every_outcome,
    files_are_attached_once_in_the_commit,
    mentions_are_stored_with_their_post,
    notices_are_derived_once,
);

async fn open(backend: Backend) -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::new(backend).await;
    let store = renkei::store::open(&db.url).await.expect("open");
    (db, store)
}

async fn user(store: &dyn Store, login: &str) -> UserRecord {
    let facility = store
        .create_facility(&NewFacility {
            name: "訪問看護ステーション".into(),
            kind: FacilityKind::VisitingNurseStation,
        })
        .await
        .expect("facility");
    let id = store
        .create_users(&[NewUser {
            facility_id: Some(facility),
            login: login.into(),
            name: format!("{login} 看護師"),
            profession: "nurse".into(),
            role: Role::Staff,
            password_hash: "hash".into(),
            ..NewUser::default()
        }])
        .await
        .expect("user")[0];
    let user = store
        .credentials(login)
        .await
        .expect("read")
        .expect("exists")
        .user;
    assert_eq!(user.id, id);
    user
}

/// A group (a consented patient group, or a free group) with `members`.
async fn group(store: &dyn Store, kind: GroupKind, members: &[&UserRecord]) -> i64 {
    let id = store
        .create_group(&NewGroup {
            kind,
            name: "山田 太郎".into(),
            patient: (kind == GroupKind::Patient).then(|| common::patient("山田 太郎")),
            owner_facility_id: None,
            consent: (kind == GroupKind::Patient).then(common::consent),
            created_at: 1,
        })
        .await
        .expect("group");
    let members: Vec<_> = members.iter().map(|m| (id, m.id)).collect();
    store.add_members(&members, 1).await.expect("members");
    id
}

fn post(group: i64, author: &UserRecord, client_id: &str, text: &str) -> NewPost {
    NewPost {
        at: 1_000,
        ..NewPost::new(
            group,
            Arc::new(author.clone()),
            client_id.into(),
            text.into(),
        )
    }
}

async fn users_and_credentials(backend: Backend) {
    let (_db, store) = open(backend).await;
    assert!(store.is_empty().await.expect("empty"));
    let alice = user(store.as_ref(), "alice").await;
    assert!(!store.is_empty().await.expect("not empty"));
    assert_eq!(alice.facility_name.as_deref(), Some("訪問看護ステーション"));
    let credentials = store
        .credentials("alice")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(credentials.password_hash, "hash");
    assert!(store.credentials("nobody").await.expect("read").is_none());
    let again = store
        .create_users(&[NewUser {
            facility_id: None,
            login: "alice".into(),
            name: "別人".into(),
            profession: "doctor".into(),
            role: Role::Admin,
            password_hash: "x".into(),
            ..NewUser::default()
        }])
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

async fn sessions_expire_and_end(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let session = |hash: u8, created_at: i64| NewSession {
        token_hash: vec![hash; 32],
        user_id: alice.id,
        created_at,
        expires_at: 100,
        user_agent: format!("phone {hash}"),
        source: "127.0.0.1".into(),
        must_change_password: hash == 9,
        must_enroll_second_factor: false,
    };
    store
        .create_sessions(&[session(7, 10), session(8, 10), session(9, 10)])
        .await
        .expect("create");
    let found = |hash: u8, now: i64, idle_since: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .session_user(&[hash; 32], now, idle_since)
                .await
                .expect("read")
                .map(|s| (s.user, s.last_used_at, s.must_change_password))
        }
    };
    assert_eq!(found(7, 99, 0).await, Some((alice.clone(), 10, false)));
    assert_eq!(found(9, 99, 0).await, Some((alice.clone(), 10, true)));
    assert_eq!(found(7, 100, 0).await, None, "expired");
    assert_eq!(found(7, 50, 10).await, None, "idle since its last use");
    // Use keeps it alive; a session past its lifetime is reported ended.
    let ended = store
        .touch_sessions(&[vec![7; 32], vec![6; 32]], 40)
        .await
        .expect("touch");
    assert_eq!(ended, vec![vec![6; 32]], "an unknown session has ended");
    assert_eq!(found(7, 50, 10).await, Some((alice.clone(), 40, false)));
    let listed = store.user_sessions(alice.id, 50, 0).await.expect("list");
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[0].token_hash,
        vec![7; 32],
        "most recently used first"
    );
    assert_eq!(listed[0].user_agent, "phone 7");
    assert_eq!(
        store
            .user_sessions(alice.id, 50, 20)
            .await
            .expect("list")
            .len(),
        1
    );
    assert_eq!(found(8, 0, -1).await.map(|f| f.0), Some(alice.clone()));
    assert_eq!(found(6, 0, -1).await, None, "unknown");
    // Ending one, then every other.
    assert!(store
        .end_user_session(alice.id, &[8; 32])
        .await
        .expect("end"));
    assert!(!store
        .end_user_session(alice.id + 1, &[7; 32])
        .await
        .expect("not theirs"));
    let ended = store
        .end_user_sessions(alice.id, Some(&[7; 32]))
        .await
        .expect("end others");
    assert_eq!(ended, vec![vec![9; 32]]);
    assert_eq!(found(7, 50, 0).await.map(|f| f.0), Some(alice.clone()));
    store.delete_session(&[7; 32]).await.expect("delete");
    assert_eq!(found(7, 50, 0).await, None, "ended");
    store
        .delete_session(&[7; 32])
        .await
        .expect("deleting twice is fine");
}

async fn passwords_history_and_locks(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let state = store.password_state(alice.id).await.expect("state");
    let state = state.expect("a password");
    assert_eq!(state.hash, "hash");
    assert_eq!(state.history, vec!["hash".to_string()]);
    store
        .create_sessions(&[
            NewSession {
                token_hash: vec![1; 32],
                user_id: alice.id,
                expires_at: i64::MAX,
                must_change_password: true,
                ..NewSession::default()
            },
            NewSession {
                token_hash: vec![2; 32],
                user_id: alice.id,
                expires_at: i64::MAX,
                ..NewSession::default()
            },
        ])
        .await
        .expect("sessions");
    // Seven changes: the history keeps the last five, newest first.
    let base = renkei_domain::clock::now_ms();
    for n in 1..=7 {
        let ended = store
            .change_password(
                alice.id,
                &format!("hash{n}"),
                base + n * 1000,
                Some(&[1; 32]),
            )
            .await
            .expect("change");
        assert_eq!(
            ended.len(),
            usize::from(n == 1),
            "the other session ends once"
        );
    }
    let state = store.password_state(alice.id).await.expect("state");
    let state = state.expect("a password");
    assert_eq!(state.hash, "hash7");
    assert_eq!(state.changed_at, Some(base + 7000));
    assert_eq!(state.history, ["hash7", "hash6", "hash5", "hash4", "hash3"]);
    let kept = store.session_user(&[1; 32], 1, -1).await.expect("read");
    assert!(
        !kept.expect("kept").must_change_password,
        "a changed password frees the session"
    );
    // A re-hash replaces the hash in both places.
    store
        .rehash_password(alice.id, "hash7", "hash7b")
        .await
        .expect("rehash");
    let state = store.password_state(alice.id).await.expect("state");
    assert_eq!(state.expect("a password").history[0], "hash7b");

    // Three failures lock at the third; the count then starts again.
    assert_eq!(
        store.login_failed(alice.id, 10, 3, 500).await.expect("1"),
        None
    );
    assert_eq!(
        store.login_failed(alice.id, 11, 3, 500).await.expect("2"),
        None
    );
    assert_eq!(
        store.login_failed(alice.id, 12, 3, 500).await.expect("3"),
        Some(512)
    );
    let credentials = store.credentials("alice").await.expect("read");
    assert_eq!(credentials.expect("alice").locked_until, Some(512));
    assert_eq!(
        store.login_failed(alice.id, 600, 3, 500).await.expect("4"),
        None
    );
    store.login_succeeded(alice.id).await.expect("success");
    assert_eq!(
        store.login_failed(alice.id, 601, 3, 500).await.expect("1"),
        None
    );
    assert_eq!(
        store.login_failed(alice.id, 602, 3, 500).await.expect("2"),
        None
    );
    let recipients = store.lock_notice_recipients(alice.id).await.expect("who");
    assert!(
        recipients.is_empty(),
        "no admin nor operator in this database"
    );

    // A second factor: pending until enabled with the same secret; each step once; each
    // recovery code once.
    assert_eq!(store.two_factor(alice.id).await.expect("2fa"), (false, 0));
    store
        .start_totp(alice.id, b"secret-1")
        .await
        .expect("start");
    assert_eq!(
        store.pending_totp(alice.id).await.expect("pending"),
        Some(b"secret-1".to_vec())
    );
    let codes = [vec![1u8; 32], vec![2u8; 32]];
    assert!(matches!(
        store.enable_totp(alice.id, b"secret-0", 100, &codes).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .enable_totp(alice.id, b"secret-1", 100, &codes)
        .await
        .expect("enable");
    assert_eq!(store.two_factor(alice.id).await.expect("2fa"), (true, 2));
    let credentials = store.credentials("alice").await.expect("read");
    assert_eq!(
        credentials.expect("alice").totp_secret,
        Some(b"secret-1".to_vec())
    );
    assert!(
        !store.use_totp_step(alice.id, 100).await.expect("step"),
        "used"
    );
    assert!(store.use_totp_step(alice.id, 101).await.expect("step"));
    assert!(
        !store.use_totp_step(alice.id, 101).await.expect("step"),
        "replay"
    );
    assert!(
        !store.use_totp_step(alice.id, 99).await.expect("step"),
        "older"
    );
    assert!(store
        .use_recovery_code(alice.id, &[1; 32], 5)
        .await
        .expect("code"));
    assert!(!store
        .use_recovery_code(alice.id, &[1; 32], 6)
        .await
        .expect("code"));
    assert!(!store
        .use_recovery_code(alice.id, &[9; 32], 6)
        .await
        .expect("code"));
    assert_eq!(store.two_factor(alice.id).await.expect("2fa"), (true, 1));

    // A reset: no password, no second factor, no session, no lock; the history stays.
    store
        .login_failed(alice.id, 603, 3, 500)
        .await
        .expect("locks");
    let ended = store.reset_password(alice.id).await.expect("reset");
    assert_eq!(ended, vec![vec![1; 32]]);
    assert!(store
        .password_state(alice.id)
        .await
        .expect("state")
        .is_none());
    assert_eq!(
        store
            .password_history(alice.id)
            .await
            .expect("history")
            .len(),
        5
    );
    let credentials = store.credentials("alice").await.expect("read");
    let credentials = credentials.expect("alice");
    assert_eq!(
        (credentials.password_hash.as_str(), credentials.locked_until),
        ("", None)
    );
    assert_eq!(credentials.totp_secret, None);
    assert_eq!(store.two_factor(alice.id).await.expect("2fa"), (false, 0));
}

async fn directory_holds_groups_and_members(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let patient = group(store.as_ref(), GroupKind::Patient, &[]).await;
    let free = group(store.as_ref(), GroupKind::Free, &[]).await;
    store
        .add_members(&[(patient, alice.id)], 5)
        .await
        .expect("member");
    assert!(matches!(
        store
            .add_members(&[(free, alice.id), (patient, alice.id)], 6)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.add_members(&[(patient, 9999)], 6).await,
        Err(StoreError::NotFound(_))
    ));
    let directory = store.directory().await.expect("directory");
    let kinds: Vec<_> = directory
        .groups
        .iter()
        .map(|g| (g.id, g.kind, g.last_seq, g.archived))
        .collect();
    let room = store.admins_room().await.expect("the admins' room exists");
    assert_eq!(
        kinds,
        [
            (room, GroupKind::Free, 0, false),
            (patient, GroupKind::Patient, 0, false),
            (free, GroupKind::Free, 0, false)
        ]
    );
    assert_eq!(
        directory.groups[1].patient_name.as_deref(),
        Some("山田 太郎")
    );
    assert_eq!(directory.groups[2].patient_name, None);
    assert_eq!(
        directory.memberships,
        [(patient, alice.id)],
        "a failed batch adds nobody"
    );
}

async fn posts_get_consecutive_sequences(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let (a, b) = (
        group(store.as_ref(), GroupKind::Patient, &[&alice]).await,
        group(store.as_ref(), GroupKind::Free, &[&alice]).await,
    );
    let batch = [
        post(a, &alice, "1", "一"),
        post(b, &alice, "2", "二"),
        post(a, &alice, "3", "三"),
    ];
    let outcomes = store.append_posts(&batch).await.expect("append");
    let seqs: Vec<_> = outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Committed(p) => (p.group, p.seq),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, [(a, 1), (b, 1), (a, 2)]);
    let next = store
        .append_posts(&[post(a, &alice, "4", "四")])
        .await
        .expect("append");
    assert!(matches!(next[0], AppendOutcome::Committed(p) if p.seq == 3));
    let directory = store.directory().await.expect("directory");
    assert_eq!(
        directory
            .groups
            .iter()
            .filter(|g| !g.admins_room)
            .map(|g| g.last_seq)
            .collect::<Vec<_>>(),
        [3, 1]
    );
    let room = store.admins_room().await.expect("room");
    assert_eq!(
        store.last_seqs().await.expect("last seqs"),
        [(room, 0), (a, 3), (b, 1)]
    );
}

async fn idempotent_client_ids(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    let g = group(store.as_ref(), GroupKind::Patient, &[&alice, &bob]).await;
    let first = store
        .append_posts(&[post(g, &alice, "c", "同じ")])
        .await
        .expect("append");
    let AppendOutcome::Committed(placement) = first[0] else {
        panic!("{first:?}")
    };
    // In a later batch, and twice within one batch: the original placement.
    let retry = store
        .append_posts(&[
            post(g, &alice, "c", "同じ"),
            post(g, &alice, "d", "新"),
            post(g, &alice, "d", "新"),
        ])
        .await
        .expect("append");
    assert_eq!(retry[0], AppendOutcome::Duplicate(placement));
    let AppendOutcome::Committed(d) = retry[1] else {
        panic!("{retry:?}")
    };
    assert_eq!(retry[2], AppendOutcome::Duplicate(d));
    let conflict = store
        .append_posts(&[post(g, &alice, "c", "違う")])
        .await
        .expect("append");
    assert_eq!(conflict[0], AppendOutcome::ClientIdConflict);
    let other_author = store
        .append_posts(&[post(g, &bob, "c", "同じ")])
        .await
        .expect("append");
    assert!(matches!(other_author[0], AppendOutcome::Committed(p) if p.seq == 3));
    assert_eq!(
        store
            .events_after(g, 0, i64::MAX, 100)
            .await
            .expect("read")
            .len(),
        3
    );
}

async fn archived_and_unknown_groups_take_nothing(backend: Backend) {
    let (db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let g = group(store.as_ref(), GroupKind::Patient, &[&alice]).await;
    common::set_archived(&db.url, g).await;
    let outcomes = store
        .append_posts(&[
            post(g, &alice, "a", "保管"),
            post(424242, &alice, "b", "不明"),
        ])
        .await
        .expect("append");
    assert_eq!(
        outcomes,
        [AppendOutcome::GroupArchived, AppendOutcome::NoSuchGroup]
    );
    assert!(store
        .events_after(g, 0, i64::MAX, 10)
        .await
        .expect("read")
        .is_empty());
    let directory = store.directory().await.expect("directory");
    assert!(directory
        .groups
        .iter()
        .any(|group| group.id == g && group.archived));
}

async fn reading_after_and_before(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let g = group(store.as_ref(), GroupKind::Patient, &[&alice]).await;
    let posts: Vec<_> = (1..=10)
        .map(|i| post(g, &alice, &format!("p{i}"), &format!("記録{i}")))
        .collect();
    store.append_posts(&posts).await.expect("append");
    let seqs =
        |events: Vec<renkei::store::EventRecord>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.events_after(g, 3, 7, 100).await.expect("read")),
        [4, 5, 6, 7]
    );
    assert_eq!(
        seqs(store.events_after(g, 3, 7, 2).await.expect("read")),
        [4, 5]
    );
    assert_eq!(
        seqs(store.events_before(g, None, 3).await.expect("read")),
        [8, 9, 10]
    );
    assert_eq!(
        seqs(store.events_before(g, Some(3), 5).await.expect("read")),
        [1, 2]
    );
    let event = &store.events_after(g, 0, 1, 1).await.expect("read")[0];
    let EventBody::Post {
        author,
        client_id,
        text,
        file: None,
    } = &event.body
    else {
        panic!("a post");
    };
    assert_eq!(
        (author, client_id.as_str(), text.as_str(), event.at),
        (&alice, "p1", "記録1", 1_000)
    );
}

async fn one_batch_mixes_every_outcome(backend: Backend) {
    let (db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let (a, b) = (
        group(store.as_ref(), GroupKind::Patient, &[&alice]).await,
        group(store.as_ref(), GroupKind::Free, &[&alice]).await,
    );
    let archived = group(store.as_ref(), GroupKind::Patient, &[&alice]).await;
    common::set_archived(&db.url, archived).await;
    store
        .append_posts(&[post(a, &alice, "old", "前の投稿")])
        .await
        .expect("append");
    let batch = [
        post(a, &alice, "n1", "新1"),         // new: a/2
        post(b, &alice, "n2", "新2"),         // new: b/1
        post(archived, &alice, "n3", "保管"), // archived
        post(a, &alice, "old", "前の投稿"),   // repeats an earlier batch
        post(a, &alice, "n1", "新1"),         // repeats this batch's first post
        post(a, &alice, "n2", "別"),          // reuses an id of this batch for other text
        post(archived, &alice, "n3", "保管"), // repeats a refused post: refused again
        post(777_777, &alice, "n4", "不明"),  // no such group
        post(a, &alice, "n5", "新5"),         // new: a/3
    ];
    let outcomes = store.append_posts(&batch).await.expect("append");
    let at = 1_000;
    use renkei::store::Placement;
    use AppendOutcome::*;
    assert_eq!(
        outcomes,
        [
            Committed(Placement {
                group: a,
                seq: 2,
                at
            }),
            Committed(Placement {
                group: b,
                seq: 1,
                at
            }),
            GroupArchived,
            Duplicate(Placement {
                group: a,
                seq: 1,
                at
            }),
            Duplicate(Placement {
                group: a,
                seq: 2,
                at
            }),
            ClientIdConflict,
            GroupArchived,
            NoSuchGroup,
            Committed(Placement {
                group: a,
                seq: 3,
                at
            }),
        ]
    );
    let texts: Vec<String> = store
        .events_after(a, 0, i64::MAX, 10)
        .await
        .expect("read")
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Post { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["前の投稿", "新1", "新5"]);
}

/// A file goes on one post, its uploader's, in its own group: checked inside the commit,
/// also between posts of one batch.
async fn files_are_attached_once_in_the_commit(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    let a = group(store.as_ref(), GroupKind::Free, &[&alice, &bob]).await;
    let b = group(store.as_ref(), GroupKind::Free, &[&alice]).await;
    let upload = |group: i64, uploader: &UserRecord| {
        let store = Arc::clone(&store);
        let uploader = uploader.id;
        async move {
            let file = NewFile {
                group,
                uploader,
                name: "写真.png".into(),
                media_type: "image/png".into(),
                size: 10,
                content_hash: vec![0; 32],
                thumbnail: true,
                at: 500,
            };
            let id = store.create_file(&file).await.expect("file");
            renkei_protocol::FileRef {
                id,
                name: file.name,
                media_type: file.media_type,
                size: file.size,
                thumbnail: true,
            }
        }
    };
    let (mine, bobs, elsewhere) = (
        upload(a, &alice).await,
        upload(a, &bob).await,
        upload(b, &alice).await,
    );
    let with = |client_id: &str, file: &renkei_protocol::FileRef| NewPost {
        file: Some(file.clone()),
        ..post(a, &alice, client_id, "写真")
    };
    let outcomes = store
        .append_posts(&[
            with("1", &mine),
            with("2", &mine),
            with("3", &bobs),
            with("4", &elsewhere),
        ])
        .await
        .expect("append");
    assert!(matches!(outcomes[0], AppendOutcome::Committed(p) if p.seq == 1));
    assert_eq!(
        outcomes[1..],
        [
            AppendOutcome::FileUnavailable,
            AppendOutcome::FileUnavailable,
            AppendOutcome::FileUnavailable
        ]
    );
    let again = store
        .append_posts(&[with("5", &mine)])
        .await
        .expect("append");
    assert_eq!(again, [AppendOutcome::FileUnavailable], "attached already");
    assert_eq!(
        store.file(mine.id).await.expect("read").expect("file").seq,
        Some(1)
    );
    let events = store.events_after(a, 0, 10, 10).await.expect("read");
    assert!(matches!(&events[0].body, EventBody::Post { file: Some(f), .. } if f == &mine));
    assert_eq!(events.len(), 1, "nothing else was stored");
}

/// Whom a post names is stored with it; its author and non-members are never named.
async fn mentions_are_stored_with_their_post(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    let carol = user(store.as_ref(), "carol").await;
    let a = group(store.as_ref(), GroupKind::Free, &[&alice, &bob]).await;
    let outcomes = store
        .append_posts(&[
            post(
                a,
                &alice,
                "1",
                "＠bob看護師 @alice 看護師 @carol 看護師 確認を",
            ),
            post(a, &alice, "2", "bob 看護師 へ（@ なし）"),
        ])
        .await
        .expect("append");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, AppendOutcome::Committed(_))));
    assert_eq!(store.mentioned(a, 1).await.expect("read"), [bob.id]);
    assert!(store.mentioned(a, 2).await.expect("read").is_empty());
    let listed = store
        .mentions_of(bob.id, &[a], None, 10)
        .await
        .expect("read");
    assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    assert!(store
        .mentions_of(carol.id, &[a], None, 10)
        .await
        .expect("read")
        .is_empty());
}

/// The follower's claim: a group's cursor moves once from where it was read, and only the
/// node that moved it writes its notices; another with the same view writes nothing.
async fn notices_are_derived_once(backend: Backend) {
    let (_db, store) = open(backend).await;
    let alice = user(store.as_ref(), "alice").await;
    let bob = user(store.as_ref(), "bob").await;
    let a = group(store.as_ref(), GroupKind::Free, &[&alice, &bob]).await;
    let b = group(store.as_ref(), GroupKind::Free, &[&alice, &bob]).await;
    store
        .append_posts(&[post(a, &alice, "1", "一"), post(b, &alice, "2", "二")])
        .await
        .expect("append");
    let backlog = store.notice_backlog(10).await.expect("backlog");
    assert_eq!(backlog, vec![(a, 0, 1), (b, 0, 1)]);
    let activity = store.new_activity(&backlog).await.expect("activity");
    assert_eq!(activity.len(), 2);
    assert_eq!(activity[0].1.posts, vec![(1, alice.id)]);
    let notice = |group| renkei::store::NewNotice {
        user: bob.id,
        kind: renkei_protocol::api::NoticeKind::Post,
        group: Some(group),
        seq: Some(1),
        subscriptions: Vec::new(),
    };
    let notices = [notice(a), notice(b)];
    let moved = store
        .commit_notices(&backlog, &notices, 1_000)
        .await
        .expect("commit");
    assert_eq!(moved, vec![a, b]);
    // A second node that read the same backlog: nothing moves, nothing is written.
    let again = store
        .commit_notices(&backlog, &notices, 1_000)
        .await
        .expect("commit");
    assert!(again.is_empty());
    assert_eq!(store.notices_since(0).await.expect("notices").len(), 2);
    assert!(store.notice_backlog(10).await.expect("backlog").is_empty());
    // Only the group whose cursor is where the node read it moves.
    store
        .append_posts(&[post(a, &alice, "3", "三")])
        .await
        .expect("append");
    let moves = [(a, 1, 2), (b, 0, 1)];
    let moved = store
        .commit_notices(&moves, &[notice(a), notice(b)], 2_000)
        .await
        .expect("commit");
    assert_eq!(moved, vec![a]);
    assert_eq!(store.notices_since(2_000).await.expect("notices").len(), 1);
}
