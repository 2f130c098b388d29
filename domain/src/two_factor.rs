//! Who must have a second factor (二要素認証; MHLW guideline): the deployment's rule. The
//! codes themselves (TOTP, recovery codes) are the server's `two_factor`.

use renkei_protocol::Role;

/// Who must have a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Requirement {
    /// The operator and facility admins (the default, as the city's rules ask).
    #[default]
    Admins,
    /// Everyone.
    Everyone,
    /// Nobody is made to; anyone may. Below the guideline for admins: for trials only.
    Optional,
}

impl Requirement {
    /// Whether an account of `role` must have a second factor.
    pub fn applies_to(self, role: Role) -> bool {
        match self {
            Requirement::Everyone => true,
            Requirement::Admins => matches!(role, Role::Admin | Role::Operator),
            Requirement::Optional => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_must_have_one() {
        assert!(Requirement::Admins.applies_to(Role::Operator));
        assert!(Requirement::Admins.applies_to(Role::Admin));
        assert!(!Requirement::Admins.applies_to(Role::Staff));
        assert!(Requirement::Everyone.applies_to(Role::Staff));
        assert!(!Requirement::Optional.applies_to(Role::Admin));
    }
}
