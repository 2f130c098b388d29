//! `renkei demo`: fills an empty database with a small demo city and prints the logins.

use std::fmt::Write as _;

use rand::Rng as _;
use renkei_protocol::api::{Consent, ConsentSigner, FacilityKind, Patient};
use renkei_protocol::{GroupKind, Role};

use crate::password::{self, PasswordError};
use crate::store::{NewFacility, NewGroup, NewUser, Store, StoreError};

/// Why the demo could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the database already has users; the demo fills only an empty database")]
    NotEmpty,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

/// One demo account.
#[derive(Debug, Clone)]
pub struct DemoLogin {
    pub login: String,
    pub password: String,
    pub name: String,
    pub facility: String,
}

struct Person {
    login: &'static str,
    name: &'static str,
    profession: &'static str,
    role: Role,
}

/// A demo group: its patient (if any), the index of its owning facility, its members.
struct DemoGroup {
    kind: GroupKind,
    name: &'static str,
    patient: Option<&'static str>,
    owner: usize,
    members: &'static [&'static str],
}

const fn person(
    login: &'static str,
    name: &'static str,
    profession: &'static str,
    role: Role,
) -> Person {
    Person {
        login,
        name,
        profession,
        role,
    }
}

/// A random password of 19 characters mixing letters, digits and a symbol, as the city's
/// rules ask (13+ characters of mixed kinds).
fn demo_password() -> String {
    const LETTERS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..4)
        .map(|_| {
            let mut part: String = (0..3)
                .map(|_| char::from(LETTERS[rng.gen_range(0..LETTERS.len())]))
                .collect();
            part.push(char::from(b'2' + rng.gen_range(0..8u8)));
            part
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Creates the demo city and returns every login with its password.
pub async fn seed(store: &dyn Store) -> Result<Vec<DemoLogin>, DemoError> {
    if !store.is_empty().await? {
        return Err(DemoError::NotEmpty);
    }
    let now = crate::clock::now_ms();
    let mut logins = Vec::new();
    let mut ids = std::collections::HashMap::new();
    let mut add = async |facility: Option<(i64, &str)>, p: &Person| -> Result<i64, DemoError> {
        let password = demo_password();
        let hash = tokio::task::spawn_blocking({
            let password = password.clone();
            move || password::hash_blocking(&password)
        })
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))??;
        let ids = store
            .create_users(&[NewUser {
                facility_id: facility.map(|f| f.0),
                login: p.login.into(),
                name: p.name.into(),
                profession: p.profession.into(),
                role: p.role,
                password_hash: hash,
                ..NewUser::default()
            }])
            .await?;
        let id = ids
            .first()
            .copied()
            .ok_or(StoreError::NotFound("created user"))?;
        logins.push(DemoLogin {
            login: p.login.into(),
            password,
            name: p.name.into(),
            facility: facility.map_or("市 (city)", |f| f.1).into(),
        });
        Ok(id)
    };

    let operator = add(
        None,
        &person(
            "city.operator",
            "市 健康福祉部 連携担当",
            "city_official",
            Role::Operator,
        ),
    )
    .await?;
    ids.insert("city.operator", operator);
    let facilities: [(&str, FacilityKind, [Person; 3]); 3] = [
        (
            "さくら在宅クリニック",
            FacilityKind::Clinic,
            [
                person("sakura.admin", "佐倉 直樹", "doctor", Role::Admin),
                person("sakura.dr.tanaka", "田中 一郎", "doctor", Role::Staff),
                person("sakura.ns.suzuki", "鈴木 花子", "nurse", Role::Staff),
            ],
        ),
        (
            "ひまわり訪問看護ステーション",
            FacilityKind::VisitingNurseStation,
            [
                person("himawari.admin", "高橋 美咲", "nurse", Role::Admin),
                person("himawari.ns.ito", "伊藤 由美", "nurse", Role::Staff),
                person(
                    "himawari.pt.watanabe",
                    "渡辺 健",
                    "physical_therapist",
                    Role::Staff,
                ),
            ],
        ),
        (
            "みどり居宅介護支援事業所",
            FacilityKind::CareManagementOffice,
            [
                person("midori.admin", "小林 和子", "care_manager", Role::Admin),
                person("midori.cm.kato", "加藤 誠", "care_manager", Role::Staff),
                person("midori.hp.yoshida", "吉田 さくら", "helper", Role::Staff),
            ],
        ),
    ];
    let mut owners = Vec::new();
    for (name, kind, people) in &facilities {
        let facility = store
            .create_facility(&NewFacility {
                name: (*name).into(),
                kind: *kind,
            })
            .await?;
        owners.push(facility);
        for p in people {
            let id = add(Some((facility, name)), p).await?;
            ids.insert(p.login, id);
        }
    }

    let groups = [
        DemoGroup {
            kind: GroupKind::Patient,
            name: "山田 太郎 様",
            patient: Some("山田 太郎"),
            owner: 0,
            members: &[
                "sakura.admin",
                "sakura.dr.tanaka",
                "sakura.ns.suzuki",
                "himawari.ns.ito",
                "midori.cm.kato",
            ],
        },
        DemoGroup {
            kind: GroupKind::Patient,
            name: "佐藤 ハナ 様",
            patient: Some("佐藤 ハナ"),
            owner: 1,
            members: &[
                "himawari.admin",
                "himawari.ns.ito",
                "himawari.pt.watanabe",
                "sakura.dr.tanaka",
                "midori.hp.yoshida",
            ],
        },
        DemoGroup {
            kind: GroupKind::Patient,
            name: "中村 次郎 様",
            patient: Some("中村 次郎"),
            owner: 2,
            members: &[
                "midori.admin",
                "midori.cm.kato",
                "midori.hp.yoshida",
                "sakura.ns.suzuki",
                "himawari.pt.watanabe",
            ],
        },
    ];
    for DemoGroup {
        kind,
        name,
        patient,
        owner,
        members,
    } in groups
    {
        // Demo patients consented (様式3) so that their groups can be used at once.
        let group = store
            .create_group(&NewGroup {
                kind,
                name: name.into(),
                patient: patient.map(|name| Patient {
                    name: name.into(),
                    kana: String::new(),
                    birth_date: "1940-04-01".into(),
                    notes: String::new(),
                }),
                owner_facility_id: Some(owners[owner]),
                consent: patient.map(|_| Consent {
                    signed_by: ConsentSigner::PatientAndFamily,
                    signed_on: "2026-04-01".into(),
                    copy_sent_on: Some("2026-04-02".into()),
                }),
                created_at: now,
            })
            .await?;
        let members: Vec<_> = members
            .iter()
            .filter_map(|login| ids.get(login).map(|user| (group, *user)))
            .collect();
        store.add_members(&members, now).await?;
    }
    // The admins' room (MCS管理者の部屋) exists from the first migration: every facility
    // admin and the city operator are in it.
    let room = store.admins_room().await?;
    let admins: Vec<_> = [
        "city.operator",
        "sakura.admin",
        "himawari.admin",
        "midori.admin",
    ]
    .iter()
    .filter_map(|login| ids.get(login).map(|user| (room, *user)))
    .collect();
    store.add_members(&admins, now).await?;
    Ok(logins)
}

/// The demo logins as a table for the terminal.
pub fn table(logins: &[DemoLogin]) -> String {
    let mut out =
        String::from("Demo city created. Logins (keep them; passwords are shown once):\n\n");
    for l in logins {
        let _ = writeln!(
            out,
            "  {:<22} {:<20} {}  ({})",
            l.login, l.password, l.name, l.facility
        );
    }
    out.push_str(
        "\nStart the server with `cargo run --release` and log in at http://127.0.0.1:8080\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_passwords_follow_the_long_rule() {
        let p = demo_password();
        assert!(p.chars().count() >= 13);
        assert!(p.chars().any(|c| c.is_ascii_digit()));
        assert!(p.chars().any(|c| c.is_ascii_alphabetic()));
        assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert_ne!(p, demo_password());
    }
}
