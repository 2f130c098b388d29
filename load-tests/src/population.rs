//! The people the load plays: groups of members, each with a session token, created
//! through the server's store before the server starts (the bare hub needs none). For
//! servers this tool does not start, `renkei-load populate` creates them in the
//! deployment's database and saves them to a file that later runs read.

use renkei::store::{NewFacility, NewGroup, NewSession, NewUser, Store, StoreError};
use renkei_protocol::api::{Consent, ConsentSigner, FacilityKind, Patient};
use renkei_protocol::{GroupId, GroupKind, Role, UserId};

/// The password of every load user, for login storms.
pub const PASSWORD: &str = "load-test-password-13!";

/// One simulated member: one user with one socket, in one group.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub user: UserId,
    pub login: String,
    pub group: GroupId,
    /// A session token (empty for the bare hub).
    pub token: String,
}

/// `groups` groups of `members` members each; every user is in exactly one group.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Population {
    pub groups: usize,
    pub members: usize,
    pub people: Vec<Member>,
    /// For hostile runs: one more user, a member of every group, who misbehaves. Not one
    /// of the measured members (its posts carry no scheduled time).
    #[serde(default)]
    pub intruder: Option<Member>,
    /// For the soak: an admin of the facility that owns every group (member of none), who
    /// deletes posts and archives and restores groups.
    #[serde(default)]
    pub admin: Option<Member>,
}

/// The people beyond the measured members a run needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    pub intruder: bool,
    pub admin: bool,
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
            intruder: None,
            admin: None,
        }
    }

    /// Every group's id, in order.
    pub fn group_ids(&self) -> Vec<renkei_protocol::GroupId> {
        self.people
            .chunks(self.members.max(1))
            .map(|group| group[0].group)
            .collect()
    }

    /// Writes the population (session tokens included: keep the file private) to `path`.
    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads a population saved by `save`, checking that its shape holds together.
    pub fn load(path: &std::path::Path) -> Result<Population, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let population: Population = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{}: not a population file: {e}", path.display()))?;
        let complete = population.members > 0
            && population.people.len() == population.groups * population.members
            && population.people.iter().all(|m| !m.token.is_empty());
        if !complete {
            return Err(format!(
                "{}: the population is incomplete (groups × members people, each with a session)",
                path.display()
            ));
        }
        Ok(population)
    }

    /// Creates the population in `store`, with the extras asked for.
    pub async fn create(
        store: &dyn Store,
        groups: usize,
        members: usize,
        extras: Extras,
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
        // The members, then the intruder and the admin if asked.
        let intruder_at = extras.intruder.then_some(count);
        let admin_at = extras.admin.then_some(count + usize::from(extras.intruder));
        let login = |i: usize| match i {
            i if Some(i) == intruder_at => "load-intruder".to_string(),
            i if Some(i) == admin_at => "load-admin".to_string(),
            i => format!("load-{i}"),
        };
        let total = count + usize::from(extras.intruder) + usize::from(extras.admin);
        let new_users: Vec<NewUser> = (0..total)
            .map(|i| NewUser {
                facility_id: Some(facility),
                login: login(i),
                name: format!("負荷 {i}"),
                profession: "nurse".into(),
                role: if Some(i) == admin_at {
                    Role::Admin
                } else {
                    Role::Staff
                },
                password_hash: hash.clone(),
                ..NewUser::default()
            })
            .collect();
        let users = store.create_users(&new_users).await?;
        let now = renkei_domain::clock::now_ms();
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
            .take(count)
            .enumerate()
            .map(|(i, user)| Member {
                user: *user,
                login: login(i),
                group: group_ids[i / members],
                token: renkei::session::random_token(),
            })
            .collect();
        let extra = |at: Option<usize>| {
            at.and_then(|i| users.get(i)).map(|user| Member {
                user: *user,
                login: login(at.unwrap_or_default()),
                group: group_ids[0],
                token: renkei::session::random_token(),
            })
        };
        let intruder = extra(intruder_at);
        let admin = extra(admin_at);
        let mut memberships: Vec<_> = people.iter().map(|m| (m.group, m.user)).collect();
        if let Some(intruder) = &intruder {
            memberships.extend(group_ids.iter().map(|g| (*g, intruder.user)));
        }
        store.add_members(&memberships, now).await?;
        let sessions: Vec<_> = people
            .iter()
            .chain(&intruder)
            .chain(&admin)
            .map(|m| NewSession {
                token_hash: renkei::session::token_hash(&m.token),
                user_id: m.user,
                created_at: now,
                expires_at: now + 24 * 3_600_000,
                ..NewSession::default()
            })
            .collect();
        store.create_sessions(&sessions).await?;
        Ok(Population {
            groups,
            members,
            people,
            intruder,
            admin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_population_loads_and_a_broken_one_does_not() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("population.json");
        let mut population = Population::synthetic(3, 2);
        for (i, member) in population.people.iter_mut().enumerate() {
            member.token = format!("token-{i}");
        }
        population.save(&path).expect("save");
        let loaded = Population::load(&path).expect("load");
        assert_eq!((loaded.groups, loaded.members), (3, 2));
        assert_eq!(loaded.people[5].token, "token-5");
        assert_eq!(loaded.people[5].group, population.people[5].group);

        // A synthetic population has no sessions: refused, as are a short list and junk.
        Population::synthetic(3, 2).save(&path).expect("save");
        assert!(Population::load(&path).is_err());
        population.people.pop();
        population.save(&path).expect("save");
        assert!(Population::load(&path).is_err());
        std::fs::write(&path, b"{not json").expect("write");
        assert!(Population::load(&path).is_err());
    }
}
