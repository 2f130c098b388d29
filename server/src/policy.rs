//! Authorization: every decision of who may do what is made here, as a pure function of
//! (actor, action, target). No IO. Handlers ask; they never check roles themselves.

use renkei_protocol::UserId;

/// What an actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read a group's events (live, catch-up, history).
    ReadGroup,
    /// Post into a group.
    PostToGroup,
}

/// What the policy needs to know of the group an action targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupFacts {
    pub exists: bool,
    pub actor_is_member: bool,
    pub archived: bool,
}

/// Why an action is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The group does not exist or the actor is not a member: one answer, so that group
    /// ids cannot be probed.
    #[error("not a member of this group")]
    NotMember,
    /// The group is archived (保管庫) and takes no posts.
    #[error("the group is archived")]
    GroupArchived,
}

/// Decides whether `actor` may take `action` on a group.
pub fn authorize(_actor: UserId, action: Action, group: GroupFacts) -> Result<(), Denial> {
    if !group.exists || !group.actor_is_member {
        return Err(Denial::NotMember);
    }
    match action {
        Action::ReadGroup => Ok(()),
        Action::PostToGroup if group.archived => Err(Denial::GroupArchived),
        Action::PostToGroup => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every combination of action and facts, with its decision.
    #[test]
    fn table() {
        use Action::*;
        let cases = [
            // action, exists, member, archived, decision
            (ReadGroup, true, true, false, Ok(())),
            (ReadGroup, true, true, true, Ok(())),
            (ReadGroup, true, false, false, Err(Denial::NotMember)),
            (ReadGroup, true, false, true, Err(Denial::NotMember)),
            (ReadGroup, false, false, false, Err(Denial::NotMember)),
            (PostToGroup, true, true, false, Ok(())),
            (PostToGroup, true, true, true, Err(Denial::GroupArchived)),
            (PostToGroup, true, false, false, Err(Denial::NotMember)),
            (PostToGroup, true, false, true, Err(Denial::NotMember)),
            (PostToGroup, false, false, false, Err(Denial::NotMember)),
        ];
        for (action, exists, actor_is_member, archived, expected) in cases {
            let facts = GroupFacts {
                exists,
                actor_is_member,
                archived,
            };
            assert_eq!(
                authorize(1, action, facts),
                expected,
                "{action:?} {facts:?}"
            );
        }
    }
}
