//! Mentions (`@name`): a post that names a member of its group after an `@` notifies them
//! and enters their list of mentions.
//!
//! A member is named by their display name as the group shows it, with or without its
//! spaces (`@看護師 アリス` or `@看護師アリス`), compared as search compares text
//! ([`crate::search::fold`]: full-width `＠` and letters fold).

use renkei_protocol::UserId;

use crate::search::fold;

/// Whether a text may mention anyone (cheap: most posts have no `@`).
pub fn may_mention(text: &str) -> bool {
    text.contains('@') || text.contains('＠')
}

/// The members `text` names, among `members` (id, display name), without its author.
pub fn find(text: &str, author: UserId, members: &[(UserId, String)]) -> Vec<UserId> {
    let text = fold(text);
    let mut named: Vec<UserId> = members
        .iter()
        .filter(|(id, _)| *id != author)
        .filter(|(_, name)| {
            let name = fold(name.trim());
            if name.is_empty() {
                return false;
            }
            let joined: String = name.chars().filter(|c| !c.is_whitespace()).collect();
            text.contains(&format!("@{name}")) || text.contains(&format!("@{joined}"))
        })
        .map(|(id, _)| *id)
        .collect();
    named.sort_unstable();
    named.dedup();
    named
}

#[cfg(test)]
mod tests {
    use super::find;

    fn members() -> Vec<(i64, String)> {
        vec![
            (1, "看護師 アリス".into()),
            (2, "医師 ボブ".into()),
            (3, "Carol Smith".into()),
            (4, "".into()),
        ]
    }

    #[test]
    fn a_name_with_or_without_its_spaces() {
        assert_eq!(find("@医師 ボブ 往診お願いします", 1, &members()), vec![2]);
        assert_eq!(find("＠医師ボブ 往診お願いします", 1, &members()), vec![2]);
        assert_eq!(
            find("@carol smith and @看護師アリス", 2, &members()),
            vec![1, 3]
        );
    }

    #[test]
    fn no_at_no_mention_and_never_oneself() {
        assert!(find("医師 ボブ に連絡済み", 1, &members()).is_empty());
        assert!(find("@看護師 アリス メモ", 1, &members()).is_empty());
        assert!(find("@ 医師 ボブ", 1, &members()).is_empty());
        assert!(
            find("@", 1, &members()).is_empty(),
            "an empty name names nobody"
        );
    }
}
