//! Authorization: every decision of who may do what is made here, as a pure function of
//! (actor, action with its target). No IO. Handlers gather the facts and ask; they never
//! check roles themselves. `docs/permissions.md` is the table of every decision, and the
//! test at the bottom checks every cell of it against this code.

use renkei_protocol::{Role, UserId};

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub id: UserId,
    pub role: Role,
    /// None for the city operator.
    pub facility: Option<i64>,
    /// Restricted to reading (別紙(2)): every action that changes something is denied.
    pub restricted: bool,
}

/// What the policy needs to know of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupFacts {
    pub exists: bool,
    pub actor_is_member: bool,
    /// The originating facility (連携元事業所); None for the city's own groups.
    pub owner: Option<i64>,
    pub archived: bool,
    /// A patient group without its consent record (様式3).
    pub needs_consent: bool,
    /// The admins' room: its membership follows the admin role, nobody else changes it.
    pub admins_room: bool,
    /// Whether members keep reading the group once it is archived (a setting).
    pub members_read_archive: bool,
}

/// What the policy needs to know of a user an action targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFacts {
    pub id: UserId,
    pub facility: Option<i64>,
    /// Active, of an approved facility: can be invited.
    pub available: bool,
}

/// What the policy needs to know of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostFacts {
    pub group: GroupFacts,
    /// None when the sequence number holds no post (never used, or not a post): the
    /// policy answers as for a post of someone else's of no facility, so that whoever may
    /// not act on every post of the group gets the same answer for every number.
    pub author: Option<UserId>,
    pub author_facility: Option<i64>,
}

/// What the policy needs to know of an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvitationFacts {
    pub invitee: UserId,
    pub invitee_facility: Option<i64>,
    pub inviter: UserId,
    /// The owning facility of the group.
    pub owner: Option<i64>,
}

/// What an actor wants to do, with the facts of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read a group's events (live, catch-up, history).
    ReadGroup(GroupFacts),
    /// Post into a group.
    PostToGroup(GroupFacts),
    /// See a group's details and members (patient, consent).
    ViewGroup(GroupFacts),
    /// Create a patient group owned by the actor's facility.
    CreatePatientGroup,
    /// Create a free group.
    CreateFreeGroup,
    /// Put the consent record (様式3) on file.
    RecordConsent(GroupFacts),
    RenameGroup(GroupFacts),
    /// Invite a user into a group.
    Invite {
        group: GroupFacts,
        invitee: UserFacts,
    },
    /// Leave a group on one's own.
    LeaveGroup(GroupFacts),
    /// Take anyone out of a group at all (themselves, their own staff, or as its owning
    /// facility's admin): asked before any member is looked up, so that someone who may
    /// not act on the group learns nothing of who is in it.
    RemoveFromGroup(GroupFacts),
    /// Remove (解除) a member from a group.
    RemoveMember {
        group: GroupFacts,
        member: UserFacts,
    },
    /// Accept or decline an invitation (招待の受理).
    RespondToInvitation(InvitationFacts),
    /// Approve or refuse an invitation of one's staff (招待承認).
    ApproveInvitation(InvitationFacts),
    /// Withdraw an invitation.
    CancelInvitation(InvitationFacts),
    /// Approve, reject, suspend, reinstate or withdraw a facility; record its pledge (様式2).
    DecideFacility,
    /// See a facility's application and status.
    ViewFacility {
        facility: i64,
    },
    /// See a facility's staff with their e-mail addresses, pledges and statuses.
    ViewStaff {
        facility: i64,
    },
    /// Register a staff member in a facility.
    RegisterStaff {
        facility: i64,
    },
    /// Change a user's profession, pledge (様式4), role; deactivate them.
    ManageUser(UserFacts),
    /// Restrict, ban or reinstate a user, or reset their password: the measures an admin
    /// takes on someone else's account.
    RestrictUser(UserFacts),
    /// Change a user's name, kana and photo.
    EditProfile(UserFacts),
    /// Review the members of every group a facility owns (定期的に精査).
    ReviewFacility {
        facility: i64,
    },
    /// Delete any post of a group at all (one's own, one's staff's, or as a moderator):
    /// asked before the post is looked up, so that sequence numbers cannot be probed.
    DeleteInGroup(GroupFacts),
    /// Delete a post (art. 10(6), 13(9)).
    DeletePost(PostFacts),
    /// Move a group to the archive (保管庫) or back.
    ArchiveGroup(GroupFacts),
    /// Read an archived group's history (the archive view).
    ViewArchive(GroupFacts),
    /// Report a post to the admins (別紙(2)(3)).
    ReportPost(GroupFacts),
    /// 確認しました: confirm having read and acted on someone else's post.
    ConfirmPost(PostFacts),
    /// Export a group's whole timeline (art. 13(16)): continuity of care, records.
    ExportGroup(GroupFacts),
    /// Turn one's own notifications of a group off or on again.
    MuteGroup(GroupFacts),
    /// Watch a facility's groups: the report queue and the monitoring view.
    Moderate {
        facility: i64,
    },
    /// Search and export the audit trail: one facility's (`Some`), or the whole network's.
    ViewAudit {
        facility: Option<i64>,
    },
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
    #[error("the patient's consent (様式3) is not on file yet")]
    ConsentRequired,
    #[error("your account is restricted to reading")]
    Restricted,
    #[error("only the city operator may do this")]
    OperatorOnly,
    #[error("only facility admins may do this")]
    AdminOnly,
    #[error("only admins of the group's owning facility may do this")]
    NotOwningAdmin,
    #[error("only admins of the user's own facility (or the operator) may do this")]
    NotTheirAdmin,
    #[error("only the invitee may answer an invitation")]
    NotInvitee,
    #[error("only admins of the invitee's facility approve an invitation")]
    NotApprover,
    #[error("only the inviter or admins of the owning facility may withdraw an invitation")]
    NotInviter,
    #[error("the admins' room's membership follows the admin role")]
    AdminsRoom,
    #[error("the user cannot be invited (inactive account or facility)")]
    Unavailable,
    #[error("you cannot do this to yourself")]
    OwnAccount,
    #[error(
        "only the author, admins of the owning facility or of the author's facility, and the \
         operator delete a post"
    )]
    NotDeleter,
    #[error("the group is not archived")]
    NotArchived,
    #[error("the group is archived; its history is open to the owning facility's admins")]
    ArchiveClosed,
    #[error("one confirms others' posts, not one's own")]
    OwnPost,
}

impl Action {
    /// Whether the action only reads.
    fn reads_only(self) -> bool {
        matches!(
            self,
            Action::ReadGroup(_)
                | Action::ViewGroup(_)
                | Action::ViewFacility { .. }
                | Action::ViewStaff { .. }
                | Action::ReviewFacility { .. }
                | Action::ViewArchive(_)
                | Action::Moderate { .. }
                | Action::ViewAudit { .. }
                | Action::ExportGroup(_)
        )
    }
}

/// Decides whether `actor` may take `action`.
pub fn authorize(actor: &Actor, action: Action) -> Result<(), Denial> {
    let operator = actor.role == Role::Operator;
    let admin = actor.role == Role::Admin;
    // Admin of the facility that owns a group; the operator stands for the city's own
    // groups (no owning facility).
    let owning_admin = |group: &GroupFacts| (admin || operator) && group.owner == actor.facility;
    let their_admin = |user: &UserFacts| operator || (admin && user.facility == actor.facility);
    let own_facility = |facility: i64| operator || (admin && actor.facility == Some(facility));
    let member = |group: &GroupFacts| {
        if group.exists && group.actor_is_member {
            Ok(())
        } else {
            Err(Denial::NotMember)
        }
    };
    let allow = |ok: bool, denial: Denial| if ok { Ok(()) } else { Err(denial) };
    let not_admins_room = |group: &GroupFacts| allow(!group.admins_room, Denial::AdminsRoom);

    if actor.restricted && !action.reads_only() {
        // Answering one's own invitations changes nothing of others', reporting a post
        // asks the admins to look, and muting a group changes only what one is told.
        if !matches!(
            action,
            Action::RespondToInvitation(_) | Action::ReportPost(_) | Action::MuteGroup(_)
        ) {
            return Err(Denial::Restricted);
        }
    }
    match action {
        Action::ReadGroup(group) => {
            member(&group)?;
            allow(
                !group.archived || group.members_read_archive,
                Denial::ArchiveClosed,
            )
        }
        Action::PostToGroup(group) => {
            member(&group)?;
            allow(!group.archived, Denial::GroupArchived)?;
            allow(!group.needs_consent, Denial::ConsentRequired)
        }
        Action::ViewGroup(group) => {
            if !group.exists {
                return Err(Denial::NotMember);
            }
            allow(
                group.actor_is_member || owning_admin(&group) || operator,
                Denial::NotMember,
            )
        }
        Action::CreatePatientGroup => allow(admin, Denial::AdminOnly),
        Action::CreateFreeGroup => allow(admin || operator, Denial::AdminOnly),
        Action::RecordConsent(group) | Action::RenameGroup(group) => {
            allow(group.exists, Denial::NotMember)?;
            not_admins_room(&group)?;
            allow(owning_admin(&group), Denial::NotOwningAdmin)
        }
        Action::Invite { group, invitee } => {
            allow(group.exists, Denial::NotMember)?;
            not_admins_room(&group)?;
            allow(owning_admin(&group), Denial::NotOwningAdmin)?;
            allow(invitee.available, Denial::Unavailable)
        }
        Action::LeaveGroup(group) => {
            member(&group)?;
            not_admins_room(&group)
        }
        Action::RemoveFromGroup(group) => {
            // An admin of any facility may take their own staff out of any group.
            allow(
                group.exists && (group.actor_is_member || owning_admin(&group) || admin),
                Denial::NotMember,
            )?;
            not_admins_room(&group)
        }
        Action::RemoveMember { group, member } => {
            allow(group.exists, Denial::NotMember)?;
            not_admins_room(&group)?;
            let own_staff = admin && member.facility.is_some() && member.facility == actor.facility;
            allow(owning_admin(&group) || own_staff, Denial::NotOwningAdmin)
        }
        Action::RespondToInvitation(invitation) => {
            allow(invitation.invitee == actor.id, Denial::NotInvitee)
        }
        Action::ApproveInvitation(invitation) => allow(
            admin
                && invitation.invitee_facility.is_some()
                && invitation.invitee_facility == actor.facility,
            Denial::NotApprover,
        ),
        Action::CancelInvitation(invitation) => allow(
            invitation.inviter == actor.id
                || ((admin || operator) && invitation.owner == actor.facility),
            Denial::NotInviter,
        ),
        Action::DecideFacility | Action::ViewAudit { facility: None } => {
            allow(operator, Denial::OperatorOnly)
        }
        Action::ViewAudit {
            facility: Some(facility),
        } => allow(own_facility(facility), Denial::NotTheirAdmin),
        Action::ViewFacility { facility }
        | Action::ViewStaff { facility }
        | Action::RegisterStaff { facility }
        | Action::ReviewFacility { facility }
        | Action::Moderate { facility } => allow(own_facility(facility), Denial::NotTheirAdmin),
        Action::ManageUser(user) => allow(their_admin(&user), Denial::NotTheirAdmin),
        Action::RestrictUser(user) => {
            allow(user.id != actor.id, Denial::OwnAccount)?;
            allow(their_admin(&user), Denial::NotTheirAdmin)
        }
        Action::EditProfile(user) => allow(
            user.id == actor.id || their_admin(&user),
            Denial::NotTheirAdmin,
        ),
        Action::DeleteInGroup(group) => allow(
            // An admin of any facility may delete their own staff's posts in any group.
            group.exists && (group.actor_is_member || owning_admin(&group) || admin || operator),
            Denial::NotMember,
        ),
        Action::DeletePost(post) => {
            allow(post.group.exists, Denial::NotMember)?;
            let own = post.author == Some(actor.id) && post.group.actor_is_member;
            let their_staff =
                admin && post.author_facility.is_some() && post.author_facility == actor.facility;
            allow(
                own || operator || owning_admin(&post.group) || their_staff,
                Denial::NotDeleter,
            )
        }
        Action::ArchiveGroup(group) => {
            allow(group.exists, Denial::NotMember)?;
            not_admins_room(&group)?;
            allow(owning_admin(&group), Denial::NotOwningAdmin)
        }
        Action::ReportPost(group) | Action::MuteGroup(group) => member(&group),
        Action::ConfirmPost(post) => {
            member(&post.group)?;
            allow(!post.group.archived, Denial::GroupArchived)?;
            allow(post.author != Some(actor.id), Denial::OwnPost)
        }
        Action::ExportGroup(group) => {
            allow(group.exists, Denial::NotMember)?;
            allow(owning_admin(&group) || operator, Denial::NotOwningAdmin)
        }
        Action::ViewArchive(group) => {
            allow(group.exists, Denial::NotMember)?;
            let as_member = group.actor_is_member && group.members_read_archive;
            allow(
                as_member || owning_admin(&group) || operator,
                Denial::NotMember,
            )?;
            allow(group.archived, Denial::NotArchived)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: UserId = 1;
    const OTHER: UserId = 2;
    const MY_FACILITY: i64 = 10;
    const OTHER_FACILITY: i64 = 20;

    fn actor(role: &str) -> Actor {
        let (role, facility) = match role {
            "operator" => (Role::Operator, None),
            "admin" => (Role::Admin, Some(MY_FACILITY)),
            "staff" => (Role::Staff, Some(MY_FACILITY)),
            other => panic!("unknown role column {other:?}"),
        };
        Actor {
            id: ME,
            role,
            facility,
            restricted: false,
        }
    }

    /// The facility that stands for "own" for this actor (None for the operator).
    fn own(actor: &Actor) -> Option<i64> {
        actor.facility
    }

    fn group(actor: &Actor, relationship: &str) -> GroupFacts {
        let base = GroupFacts {
            exists: true,
            members_read_archive: true,
            ..GroupFacts::default()
        };
        match relationship {
            "member, owning facility" => GroupFacts {
                actor_is_member: true,
                owner: own(actor),
                ..base
            },
            "member, other facility" => GroupFacts {
                actor_is_member: true,
                owner: Some(OTHER_FACILITY),
                ..base
            },
            "owning facility" => GroupFacts {
                owner: own(actor),
                ..base
            },
            "none" => GroupFacts {
                owner: Some(OTHER_FACILITY),
                ..base
            },
            "member, no consent" => GroupFacts {
                actor_is_member: true,
                needs_consent: true,
                owner: Some(OTHER_FACILITY),
                ..base
            },
            "member, archived" => GroupFacts {
                actor_is_member: true,
                archived: true,
                owner: Some(OTHER_FACILITY),
                ..base
            },
            "member, archive closed to members" => GroupFacts {
                actor_is_member: true,
                archived: true,
                members_read_archive: false,
                owner: Some(OTHER_FACILITY),
                ..base
            },
            "admins' room member" => GroupFacts {
                actor_is_member: true,
                admins_room: true,
                owner: own(actor),
                ..base
            },
            "no such group" => GroupFacts::default(),
            other => panic!("unknown group relationship {other:?}"),
        }
    }

    fn user(actor: &Actor, relationship: &str) -> UserFacts {
        match relationship {
            "self" => UserFacts {
                id: ME,
                facility: actor.facility,
                available: true,
            },
            "own facility" => UserFacts {
                id: OTHER,
                facility: Some(MY_FACILITY),
                available: true,
            },
            "other facility" => UserFacts {
                id: OTHER,
                facility: Some(OTHER_FACILITY),
                available: true,
            },
            "unavailable" => UserFacts {
                id: OTHER,
                facility: Some(OTHER_FACILITY),
                available: false,
            },
            other => panic!("unknown user relationship {other:?}"),
        }
    }

    fn invitation(actor: &Actor, relationship: &str) -> InvitationFacts {
        let base = InvitationFacts {
            invitee: OTHER,
            invitee_facility: Some(OTHER_FACILITY),
            inviter: 3,
            owner: Some(OTHER_FACILITY + 1),
        };
        match relationship {
            "invitee" => InvitationFacts {
                invitee: ME,
                invitee_facility: actor.facility,
                ..base
            },
            "inviter" => InvitationFacts {
                inviter: ME,
                ..base
            },
            "invitee's facility" => InvitationFacts {
                invitee_facility: Some(MY_FACILITY),
                ..base
            },
            "owning facility" => InvitationFacts {
                owner: own(actor),
                ..base
            },
            "none" => base,
            other => panic!("unknown invitation relationship {other:?}"),
        }
    }

    fn facility(relationship: &str) -> i64 {
        match relationship {
            "own facility" => MY_FACILITY,
            "other facility" => OTHER_FACILITY,
            other => panic!("unknown facility relationship {other:?}"),
        }
    }

    fn post(actor: &Actor, relationship: &str) -> PostFacts {
        let by = |author, author_facility, relation: &str| PostFacts {
            group: group(actor, relation),
            author: Some(author),
            author_facility,
        };
        match relationship {
            "own post" => by(ME, actor.facility, "member, other facility"),
            "own post, no longer a member" => by(ME, actor.facility, "none"),
            "owning facility" => by(OTHER, Some(OTHER_FACILITY), "owning facility"),
            "author of own facility" => by(OTHER, Some(MY_FACILITY), "none"),
            "member" => by(OTHER, Some(OTHER_FACILITY), "member, other facility"),
            "none" => by(OTHER, Some(OTHER_FACILITY), "none"),
            "no such post, member" => PostFacts {
                author: None,
                author_facility: None,
                ..by(OTHER, None, "member, other facility")
            },
            "no such post, owning facility" => PostFacts {
                author: None,
                author_facility: None,
                ..by(OTHER, None, "owning facility")
            },
            "no such post, none" => PostFacts {
                author: None,
                author_facility: None,
                ..by(OTHER, None, "none")
            },
            other => panic!("unknown post relationship {other:?}"),
        }
    }

    /// The action a row of the table names, for an actor.
    fn scenario(action: &str, relationship: &str, actor: &Actor) -> Action {
        let (target, relation) = relationship
            .split_once(": ")
            .map_or(("", relationship), |(a, b)| (a, b));
        match action {
            "read a group" => Action::ReadGroup(group(actor, relationship)),
            "post" => Action::PostToGroup(group(actor, relationship)),
            "view a group" => Action::ViewGroup(group(actor, relationship)),
            "create a patient group" => Action::CreatePatientGroup,
            "create a free group" => Action::CreateFreeGroup,
            "record consent" => Action::RecordConsent(group(actor, relationship)),
            "rename a group" => Action::RenameGroup(group(actor, relationship)),
            "invite" => match target {
                "invitee" => Action::Invite {
                    group: group(actor, "owning facility"),
                    invitee: user(actor, relation),
                },
                _ => Action::Invite {
                    group: group(actor, relationship),
                    invitee: user(actor, "other facility"),
                },
            },
            "leave a group" => Action::LeaveGroup(group(actor, relationship)),
            "remove from a group" => Action::RemoveFromGroup(group(actor, relationship)),
            "delete in a group" => Action::DeleteInGroup(group(actor, relationship)),
            "remove a member" => match target {
                "member" => Action::RemoveMember {
                    group: group(actor, "none"),
                    member: user(actor, relation),
                },
                _ => Action::RemoveMember {
                    group: group(actor, relationship),
                    member: user(actor, "other facility"),
                },
            },
            "accept or decline an invitation" => {
                Action::RespondToInvitation(invitation(actor, relationship))
            }
            "approve or refuse an invitation" => {
                Action::ApproveInvitation(invitation(actor, relationship))
            }
            "cancel an invitation" => Action::CancelInvitation(invitation(actor, relationship)),
            "decide on a facility" => Action::DecideFacility,
            "view a facility" => Action::ViewFacility {
                facility: facility(relationship),
            },
            "view staff" => Action::ViewStaff {
                facility: facility(relationship),
            },
            "register staff" => Action::RegisterStaff {
                facility: facility(relationship),
            },
            "review members" => Action::ReviewFacility {
                facility: facility(relationship),
            },
            "manage a user" => Action::ManageUser(user(actor, relationship)),
            "restrict or ban a user" => Action::RestrictUser(user(actor, relationship)),
            "edit a profile" => Action::EditProfile(user(actor, relationship)),
            "delete a post" => Action::DeletePost(post(actor, relationship)),
            "archive or restore a group" => Action::ArchiveGroup(group(actor, relationship)),
            "report a post" => Action::ReportPost(group(actor, relationship)),
            "confirm a post" => Action::ConfirmPost(match relationship {
                "member, archived" => PostFacts {
                    group: group(actor, relationship),
                    ..post(actor, "member")
                },
                _ => post(actor, relationship),
            }),
            "export a group" => Action::ExportGroup(group(actor, relationship)),
            "mute a group" => Action::MuteGroup(group(actor, relationship)),
            "moderate" => Action::Moderate {
                facility: facility(relationship),
            },
            "view the audit trail" => Action::ViewAudit {
                facility: (relationship != "whole network").then(|| facility(relationship)),
            },
            "view the archive" => Action::ViewArchive(GroupFacts {
                archived: true,
                ..group(actor, relationship)
            }),
            other => panic!("unknown action {other:?}"),
        }
    }

    /// Every cell of docs/permissions.md: each row names an action and a relationship,
    /// each column a role, each cell ✓ (allowed) or ✗ (denied).
    #[test]
    fn every_cell_of_the_permissions_table() {
        let table = include_str!("../../docs/permissions.md");
        let mut header: Option<Vec<String>> = None;
        let mut cells = 0;
        let mut actions = std::collections::BTreeSet::new();
        for line in table.lines() {
            let line = line.trim();
            if !line.starts_with('|') || line.starts_with("|--") || line.starts_with("| --") {
                continue;
            }
            let columns: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            if columns.first().map(String::as_str) == Some("action") {
                // The decisions table has role columns; other tables are not read.
                header = columns.iter().any(|c| c == "operator").then_some(columns);
                continue;
            }
            let Some(header) = &header else { continue };
            let (action, relationship) = (&columns[0], &columns[1]);
            actions.insert(action.clone());
            for (role, cell) in header.iter().zip(&columns).skip(2) {
                let actor = actor(role);
                let decision = authorize(&actor, scenario(action, relationship, &actor));
                let expected = match cell.as_str() {
                    "✓" => true,
                    "✗" => false,
                    other => panic!("cell {other:?} in {action} / {relationship} / {role}"),
                };
                assert_eq!(
                    decision.is_ok(),
                    expected,
                    "{action} / {relationship} / {role}: {decision:?}"
                );
                cells += 1;
            }
        }
        assert!(cells > 150, "the table was read ({cells} cells)");
        assert_eq!(actions.len(), 32, "every action has rows: {actions:?}");
    }

    #[test]
    fn a_restricted_actor_reads_and_answers_invitations_but_changes_nothing() {
        let actor = Actor {
            restricted: true,
            ..actor("admin")
        };
        let mine = group(&actor, "member, owning facility");
        assert_eq!(authorize(&actor, Action::ReadGroup(mine)), Ok(()));
        assert_eq!(
            authorize(&actor, Action::PostToGroup(mine)),
            Err(Denial::Restricted)
        );
        assert_eq!(
            authorize(&actor, Action::RecordConsent(mine)),
            Err(Denial::Restricted)
        );
        let invited = invitation(&actor, "invitee");
        assert_eq!(
            authorize(&actor, Action::RespondToInvitation(invited)),
            Ok(())
        );
        // Muting changes only what they are told.
        assert_eq!(authorize(&actor, Action::MuteGroup(mine)), Ok(()));
    }

    #[test]
    fn denials_say_why() {
        let staff = actor("staff");
        assert_eq!(
            authorize(
                &staff,
                Action::PostToGroup(group(&staff, "member, no consent"))
            ),
            Err(Denial::ConsentRequired)
        );
        assert_eq!(
            authorize(
                &staff,
                Action::PostToGroup(group(&staff, "member, archived"))
            ),
            Err(Denial::GroupArchived)
        );
        assert_eq!(
            authorize(&staff, Action::DecideFacility),
            Err(Denial::OperatorOnly)
        );
    }
}
