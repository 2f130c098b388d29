//! The people the load plays: groups of members, each with a session token, created
//! through the server's store before the server starts (the bare hub needs none).

use renkei::store::{NewFacility, NewGroup, NewSession, NewUser, Store, StoreError};
use renkei_protocol::api::{Consent, ConsentSigner, FacilityKind, Patient};
use renkei_protocol::{GroupId, GroupKind, Role, UserId};

/// The password of every load user, for login storms.
pub const PASSWORD: &str = "load-test-password-13!";

/// One simulated member: one user with one socket, in one group.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: UserId,
    pub login: String,
    pub group: GroupId,
    /// A session token (empty for the bare hub).
    pub token: String,
}

/// `groups` groups of `members` members each; every user is in exactly one group.
#[derive(Debug, Clone)]
pub struct Population {
    pub groups: usize,
    pub members: usize,
    pub people: Vec<Member>,
}

impl Population {
    /// Ids without a database, for the bare hub.
    pub fn synthetic(groups: usize, members: usize) -> Population {
        let people = (0..groups * members)
            .map(|i| Member {
                user: i as i64 + 1,
                login: format!("load-{i}"),
                group: (i / members) as i64 + 1,
                token: String::new(),
            })
            .collect();
        Population {
            groups,
            members,
            people,
        }
    }

    /// Creates the population in `store`.
    pub async fn create(
        store: &dyn Store,
        groups: usize,
        members: usize,
    ) -> Result<Population, StoreError> {
        let facility = store
            .create_facility(&NewFacility {
                name: "負荷試験ステーション".into(),
                kind: FacilityKind::VisitingNurseStation,
            })
            .await?;
        let hash = tokio::task::spawn_blocking(|| renkei::password::hash_blocking(PASSWORD))
            .await
            .map_err(|_| StoreError::Corrupt("hashing task failed".into()))?
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let count = groups * members;
        let new_users: Vec<NewUser> = (0..count)
            .map(|i| NewUser {
                facility_id: Some(facility),
                login: format!("load-{i}"),
                name: format!("負荷 {i}"),
                profession: "nurse".into(),
                role: Role::Staff,
                password_hash: hash.clone(),
                ..NewUser::default()
            })
            .collect();
        let users = store.create_users(&new_users).await?;
        let now = renkei::clock::now_ms();
        let mut group_ids = Vec::with_capacity(groups);
        for g in 0..groups {
            group_ids.push(
                store
                    .create_group(&NewGroup {
                        kind: GroupKind::Patient,
                        name: format!("負荷患者 {g}"),
                        patient: Some(Patient {
                            name: format!("負荷患者 {g}"),
                            kana: String::new(),
                            birth_date: "1940-01-01".into(),
                            notes: String::new(),
                        }),
                        owner_facility_id: Some(facility),
                        // Consented (様式3), so that the load can post at once.
                        consent: Some(Consent {
                            signed_by: ConsentSigner::Patient,
                            signed_on: "2026-01-01".into(),
                            copy_sent_on: None,
                        }),
                        created_at: now,
                    })
                    .await?,
            );
        }
        let people: Vec<Member> = users
            .iter()
            .enumerate()
            .map(|(i, user)| Member {
                user: *user,
                login: format!("load-{i}"),
                group: group_ids[i / members],
                token: renkei::session::random_token(),
            })
            .collect();
        let memberships: Vec<_> = people.iter().map(|m| (m.group, m.user)).collect();
        store.add_members(&memberships, now).await?;
        let sessions: Vec<_> = people
            .iter()
            .map(|m| NewSession {
                token_hash: renkei::session::token_hash(&m.token),
                user_id: m.user,
                created_at: now,
                expires_at: now + 24 * 3_600_000,
            })
            .collect();
        store.create_sessions(&sessions).await?;
        Ok(Population {
            groups,
            members,
            people,
        })
    }
}
