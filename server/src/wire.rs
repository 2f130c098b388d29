//! The one place where internal records become protocol messages and internal errors
//! become wire error codes.

use axum::extract::ws::Utf8Bytes;
use renkei_domain::policy::Denial;
use renkei_protocol::{
    ErrorBody, ErrorCode, EventData, FacilityRef, GroupEvent, GroupId, GroupSummary, ServerMessage,
    UserProfile,
};

use crate::store::{EventBody, EventRecord, GroupRecord, UserRecord};

/// A user as the protocol shows them.
pub fn profile(user: &UserRecord) -> UserProfile {
    UserProfile {
        id: user.id,
        name: user.name.clone(),
        profession: user.profession.clone(),
        facility: user.facility_id.map(|id| FacilityRef {
            id,
            name: user.facility_name.clone().unwrap_or_default(),
        }),
        role: user.role,
    }
}

/// The public part of a user's details, as every other message shows a user.
pub fn details_profile(user: &renkei_protocol::api::UserDetails) -> UserProfile {
    UserProfile {
        id: user.id,
        name: user.name.clone(),
        profession: user.profession.clone(),
        facility: user.facility.clone(),
        role: user.role,
    }
}

/// A stored event as the protocol carries it.
pub fn event(record: &EventRecord) -> GroupEvent {
    let data = match &record.body {
        EventBody::Post {
            author,
            client_id,
            text,
            file,
        } => EventData::Post {
            author: profile(author),
            client_id: client_id.clone(),
            text: text.clone(),
            file: file.clone(),
        },
        EventBody::MemberJoined { member, by } => EventData::MemberJoined {
            member: profile(member),
            by: by.as_ref().map(profile),
        },
        EventBody::MemberLeft { member } => EventData::MemberLeft {
            member: profile(member),
        },
        EventBody::MemberRemoved { member, by } => EventData::MemberRemoved {
            member: profile(member),
            by: profile(by),
        },
        EventBody::GroupRenamed { name, by } => EventData::GroupRenamed {
            name: name.clone(),
            by: profile(by),
        },
        EventBody::ConsentRecorded { by } => EventData::ConsentRecorded { by: profile(by) },
        EventBody::DeletedPost {
            author,
            deleted_by,
            deleted_at,
        } => EventData::DeletedPost {
            author: profile(author),
            deleted_by: profile(deleted_by),
            deleted_at: *deleted_at,
        },
        EventBody::PostDeleted { seq, by } => EventData::PostDeleted {
            seq: *seq,
            by: profile(by),
        },
        EventBody::GroupArchived { by } => EventData::GroupArchived {
            by: by.as_ref().map(profile),
        },
        EventBody::ArchiveNotice { archive_after } => EventData::ArchiveNotice {
            archive_after: *archive_after,
        },
        EventBody::GroupRestored { by } => EventData::GroupRestored { by: profile(by) },
        EventBody::PostConfirmed { seq, by } => EventData::PostConfirmed {
            seq: *seq,
            by: profile(by),
        },
    };
    GroupEvent {
        group: record.group,
        seq: record.seq,
        at: record.at,
        data,
    }
}

/// A group as listed in the welcome.
pub fn group_summary(group: &GroupRecord) -> GroupSummary {
    GroupSummary {
        id: group.id,
        kind: group.kind,
        name: group.name.clone(),
        patient_name: group.patient_name.clone(),
        archived: group.archived,
        needs_consent: group.needs_consent,
        admins_room: group.admins_room,
        last_seq: group.last_seq,
        read_seq: 0,
        unread: 0,
        unread_mentions: 0,
    }
}

/// Serializes a server message into a text frame.
pub fn frame(message: &ServerMessage) -> Utf8Bytes {
    // Serializing these plain structs (string keys, no maps with non-string keys) cannot
    // fail; an empty frame would be answered by the client as an invalid message.
    Utf8Bytes::from(serde_json::to_string(message).unwrap_or_default())
}

/// An error message about a request.
pub fn error(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody {
        code,
        message: message.into(),
        client_id: None,
        group: None,
        rules: Vec::new(),
    }
}

/// The wire code of a policy denial.
pub fn denial_code(denial: Denial) -> ErrorCode {
    match denial {
        Denial::NotMember => ErrorCode::NotMember,
        Denial::GroupArchived => ErrorCode::GroupArchived,
        Denial::ConsentRequired => ErrorCode::ConsentRequired,
        Denial::Restricted => ErrorCode::AccountRestricted,
        Denial::OperatorOnly
        | Denial::AdminOnly
        | Denial::NotOwningAdmin
        | Denial::NotTheirAdmin
        | Denial::NotInvitee
        | Denial::NotApprover
        | Denial::NotInviter
        | Denial::AdminsRoom
        | Denial::Unavailable
        | Denial::OwnAccount
        | Denial::NotDeleter
        | Denial::NotArchived
        | Denial::ArchiveClosed
        | Denial::OwnPost => ErrorCode::Forbidden,
    }
}

/// An error answering a request about `group`.
pub fn group_error(code: ErrorCode, message: impl Into<String>, group: GroupId) -> ErrorBody {
    ErrorBody {
        group: Some(group),
        ..error(code, message)
    }
}
