//! `renkei demo`: fills an empty database with a small demo city and prints the logins.
//! Its patient groups hold a week of everyday posts (fictional people and patients), with
//! mentions, confirmations (確認しました) and a file, dated over the past week by the
//! server's clock, so that a newcomer has something to look at.

use std::fmt::Write as _;

use rand::Rng as _;
use renkei_protocol::api::{Consent, ConsentSigner, FacilityKind, Patient};
use renkei_protocol::{GroupKind, Role};

use crate::files::{self, AttachError, FileStore, Upload};
use crate::password::{self, PasswordError};
use crate::store::{
    AppendOutcome, Change, NewFacility, NewGroup, NewPost, NewUser, Store, StoreError,
};

/// Why the demo could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the database already has users; the demo fills only an empty database")]
    NotEmpty,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("the demo file: {0}")]
    File(#[from] AttachError),
    #[error("a demo post was not stored: {0}")]
    Post(String),
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

/// Creates the demo city and returns every login with its password. With `files`, its
/// groups get a week of posts, whose file goes into `files` as an upload would.
pub async fn seed(
    store: &dyn Store,
    files: Option<&FileStore>,
) -> Result<Vec<DemoLogin>, DemoError> {
    if !store.is_empty().await? {
        return Err(DemoError::NotEmpty);
    }
    let now = renkei_domain::clock::now_ms();
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
    let mut group_ids = Vec::new();
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
        group_ids.push(group);
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
    if let Some(files) = files {
        week_of_posts(store, files, &group_ids, now).await?;
    }
    Ok(logins)
}

/// One demo post: days before today (in Japan), the time of day, the group (by its place
/// in `seed`'s list), the author's login and the text; then who confirmed it, and whether
/// it carries the demo file.
struct DemoPost {
    days_ago: i64,
    time: (i64, i64),
    group: usize,
    author: &'static str,
    text: &'static str,
    confirmed_by: &'static [&'static str],
    file: bool,
}

const fn post(
    days_ago: i64,
    time: (i64, i64),
    group: usize,
    author: &'static str,
    text: &'static str,
    confirmed_by: &'static [&'static str],
) -> DemoPost {
    DemoPost {
        days_ago,
        time,
        group,
        author,
        text,
        confirmed_by,
        file: false,
    }
}

/// The same post carrying the demo file.
const fn with_file(mut post: DemoPost) -> DemoPost {
    post.file = true;
    post
}

/// A week in the three patient groups: visits, vital signs, medication, rehabilitation,
/// care plans. Everyone in them is fictional.
const WEEK: &[DemoPost] = &[
    post(7, (9, 10), 0, "sakura.dr.tanaka", "今週の訪問診療の予定です。火曜と金曜の午後に伺います。褥瘡の処置は訪問看護でお願いします。", &["sakura.ns.suzuki", "himawari.ns.ito"]),
    post(7, (14, 30), 1, "himawari.ns.ito", "本日訪問。体温 36.6℃、血圧 124/76、SpO2 97%。食事は全量摂取、夜間もよく眠れているとのことです。", &["himawari.pt.watanabe"]),
    post(7, (16, 5), 2, "midori.cm.kato", "サービス担当者会議を来週水曜 14 時に予定しています。ご都合の悪い方はお知らせください。", &["midori.hp.yoshida", "himawari.pt.watanabe"]),
    post(6, (10, 20), 0, "sakura.ns.suzuki", "仙骨部の褥瘡、発赤は前回より縮小しています。ポジショニングは2時間ごとを継続してください。", &["sakura.dr.tanaka"]),
    post(6, (11, 45), 2, "midori.hp.yoshida", "午前の訪問介護で入浴介助を行いました。皮膚の異常はありません。水分は 800 mL ほど摂れています。", &[]),
    post(6, (15, 40), 1, "himawari.pt.watanabe", "リハビリ実施。歩行器で廊下 20 m を 2 往復できました。ふらつきはありません。", &["himawari.ns.ito"]),
    post(5, (9, 0), 1, "sakura.dr.tanaka", "@伊藤 由美 さん、降圧薬を朝 1 錠に減量しました。数日、朝夕の血圧を記録していただけますか。", &["himawari.ns.ito"]),
    with_file(post(5, (13, 15), 0, "himawari.ns.ito", "本日の訪問で血圧 138/84。服薬カレンダーを更新しました（画像を添付します）。", &["sakura.ns.suzuki"])),
    post(5, (17, 30), 2, "sakura.ns.suzuki", "夕方の訪問で、ご家族から夜間のトイレ介助が大変とのお話がありました。@加藤 誠 さん、ポータブルトイレの導入をご検討いただけますか。", &["midori.cm.kato"]),
    post(4, (10, 0), 2, "midori.cm.kato", "ポータブルトイレは明日福祉用具の事業所が搬入します。設置場所はベッドの右側の予定です。", &["sakura.ns.suzuki", "midori.hp.yoshida"]),
    post(4, (14, 10), 0, "sakura.dr.tanaka", "訪問診療。胸部の聴診で異常なし。食欲もあり、現在の処方を継続します。", &["sakura.ns.suzuki", "midori.cm.kato"]),
    post(4, (16, 45), 1, "midori.hp.yoshida", "買い物と調理の支援を行いました。塩分控えめの献立を続けています。", &[]),
    post(3, (8, 50), 1, "himawari.ns.ito", "朝の血圧 118/72、夕 126/78 でした。減量後もめまいの訴えはありません。@田中 一郎 先生、ご確認をお願いします。", &["sakura.dr.tanaka"]),
    post(3, (11, 30), 0, "midori.cm.kato", "来月のショートステイの空き状況を確認中です。分かり次第共有します。", &[]),
    post(3, (15, 0), 2, "himawari.pt.watanabe", "ベッドからポータブルトイレへの移乗を練習しました。手すりを使えば見守りで可能です。", &["midori.hp.yoshida"]),
    post(2, (9, 30), 0, "sakura.ns.suzuki", "本日の訪問で体温 37.4℃。水分摂取が少なめのため、ご家族に声かけをお願いしました。明朝も検温します。", &["sakura.dr.tanaka"]),
    post(2, (13, 40), 2, "midori.hp.yoshida", "昼食は 8 割摂取。夜間のトイレは 2 回、ポータブルトイレを使えたとのことです。", &["midori.cm.kato"]),
    post(2, (16, 20), 1, "sakura.dr.tanaka", "血圧は安定しています。次回の訪問診療で処方を見直します。", &["himawari.ns.ito"]),
    post(1, (9, 5), 0, "sakura.ns.suzuki", "今朝は 36.8℃ に下がりました。水分は昨日 1,000 mL 摂れています。", &["sakura.dr.tanaka", "midori.cm.kato"]),
    post(1, (11, 0), 1, "himawari.pt.watanabe", "屋外歩行の練習を始めました。玄関の段差は手すりで昇降できます。", &[]),
    post(1, (14, 50), 2, "midori.cm.kato", "サービス担当者会議の資料を作成しました。当日お配りします。", &["sakura.ns.suzuki"]),
    post(1, (17, 10), 0, "himawari.ns.ito", "夕方の訪問。褥瘡はさらに縮小し、滲出液もほとんどありません。", &[]),
];

/// The demo file: a small PNG drawn here (a weekly medication calendar, 服薬カレンダー:
/// a row per time of day, a column per day, the doses taken filled in).
fn calendar_png() -> Result<Vec<u8>, AttachError> {
    const CELL: u32 = 40;
    let (columns, rows) = (7, 3);
    let image = image::RgbImage::from_fn(columns * CELL + 1, rows * CELL + 1, |x, y| {
        let (column, row) = (x / CELL, y / CELL);
        if x % CELL == 0 || y % CELL == 0 {
            image::Rgb([80, 80, 80])
        } else if column < 5 || (column == 5 && row < 2) {
            image::Rgb([120, 190, 120])
        } else {
            image::Rgb([250, 250, 250])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|_| AttachError::BadImage)?;
    Ok(out.into_inner())
}

/// Posts [`WEEK`] into the demo groups at their times (Japan time, before `now`), in order,
/// with their confirmations and the file, through the same store calls as the server.
async fn week_of_posts(
    store: &dyn Store,
    files: &FileStore,
    groups: &[i64],
    now: i64,
) -> Result<(), DemoError> {
    const DAY: i64 = 86_400_000;
    const JAPAN: i64 = 9 * 3_600_000;
    let today = (now + JAPAN).div_euclid(DAY) * DAY - JAPAN;
    let mut users = std::collections::HashMap::new();
    for login in WEEK
        .iter()
        .flat_map(|p| std::iter::once(&p.author).chain(p.confirmed_by))
    {
        if !users.contains_key(login) {
            let credentials = store
                .credentials(login)
                .await?
                .ok_or(StoreError::NotFound("demo user"))?;
            users.insert(*login, std::sync::Arc::new(credentials.user));
        }
    }
    let mut week: Vec<&DemoPost> = WEEK.iter().collect();
    week.sort_by_key(|p| (-p.days_ago, p.time));
    for (i, demo) in week.into_iter().enumerate() {
        let at = today - demo.days_ago * DAY + demo.time.0 * 3_600_000 + demo.time.1 * 60_000;
        let group = groups[demo.group];
        let author = std::sync::Arc::clone(&users[demo.author]);
        let mut new = NewPost::new(group, author, format!("demo-{i}"), demo.text.into());
        new.at = at;
        if demo.file {
            let upload = Upload {
                group,
                uploader: users[demo.author].id,
                name: Some("服薬カレンダー.png"),
                kind: renkei_domain::upload::Kind::Png,
                at,
            };
            let incoming = files::Incoming::from_bytes(&calendar_png()?).await?;
            let decoding = files::Decoding::default();
            new.file = Some(files::store_upload(store, files, &decoding, upload, incoming).await?);
        }
        let seq = match store.append_posts(&[new]).await?.first() {
            Some(AppendOutcome::Committed(placement)) => placement.seq,
            other => return Err(DemoError::Post(format!("{other:?}"))),
        };
        // Confirmed ten minutes apart after it (a group's next post is hours later).
        for (n, by) in (1..).zip(demo.confirmed_by) {
            let change = Change::Confirm {
                seq,
                by: users[by].id,
            };
            store.apply_change(group, &change, at + n * 600_000).await?;
        }
    }
    Ok(())
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
