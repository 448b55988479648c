//! The referral state machine: who may move a referral, and from where to where.
//!
//! draft → requested → accepted | rejected; accepted → arrived → completed. A referral is
//! cancelled from draft, requested or accepted by its sender, and expires from requested when the
//! receiver does not decide within the tenant's SLA. Rejected, completed, cancelled and expired
//! are terminal.

crate::string_enum! {
    /// Where a referral stands.
    pub enum Status {
        Draft = "draft",
        Requested = "requested",
        Accepted = "accepted",
        Rejected = "rejected",
        Arrived = "arrived",
        Completed = "completed",
        Cancelled = "cancelled",
        Expired = "expired",
    }
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Rejected | Self::Completed | Self::Cancelled | Self::Expired)
    }
}

crate::string_enum! {
    /// Which way a referral goes.
    pub enum Direction {
        /// Village to township or county, township to county.
        Up = "up",
        /// County (or township) back to the grassroots, with a discharge summary and a rehab plan.
        Down = "down",
        /// To a hospital outside the county: recorded for the retention KPI.
        Out = "out",
    }
}

crate::string_enum! {
    /// How soon the receiver should decide.
    pub enum Urgency {
        Routine = "routine",
        Urgent = "urgent",
    }
}

use super::events;
use crate::platform::events::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Submit,
    Accept,
    Reject,
    Arrive,
    Complete,
    Cancel,
    Expire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Sender,
    Receiver,
    System,
}

impl Action {
    pub fn party(self) -> Party {
        match self {
            Self::Submit | Self::Cancel => Party::Sender,
            Self::Accept | Self::Reject | Self::Arrive | Self::Complete => Party::Receiver,
            Self::Expire => Party::System,
        }
    }

    /// The event this transition publishes: `referrals.<event>`.
    pub fn event(self) -> &'static str {
        match self {
            Self::Submit => events::Requested::TYPE,
            Self::Accept => events::Accepted::TYPE,
            Self::Reject => events::Rejected::TYPE,
            Self::Arrive => events::Arrived::TYPE,
            Self::Complete => events::Completed::TYPE,
            Self::Cancel => events::Cancelled::TYPE,
            Self::Expire => events::Expired::TYPE,
        }
    }
}

/// The status after `action`, or `None` when the transition does not exist.
pub fn next(status: Status, action: Action) -> Option<Status> {
    use Action::*;
    use Status::*;
    match (status, action) {
        (Draft, Submit) => Some(Requested),
        (Requested, Accept) => Some(Accepted),
        (Requested, Reject) => Some(Rejected),
        (Accepted, Arrive) => Some(Arrived),
        (Arrived, Complete) => Some(Completed),
        (Draft | Requested | Accepted, Cancel) => Some(Cancelled),
        (Requested, Expire) => Some(Expired),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_go_nowhere() {
        for s in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
            for a in [
                Action::Submit,
                Action::Accept,
                Action::Reject,
                Action::Arrive,
                Action::Complete,
                Action::Cancel,
                Action::Expire,
            ] {
                assert_eq!(next(s, a), None, "{s:?} {a:?}");
            }
        }
    }

    #[test]
    fn the_happy_path_and_its_parties() {
        let mut s = Status::Draft;
        for (a, p) in [
            (Action::Submit, Party::Sender),
            (Action::Accept, Party::Receiver),
            (Action::Arrive, Party::Receiver),
            (Action::Complete, Party::Receiver),
        ] {
            assert_eq!(a.party(), p);
            s = next(s, a).unwrap();
        }
        assert_eq!(s, Status::Completed);
        assert_eq!(next(Status::Arrived, Action::Cancel), None, "an arrived patient is not cancelled");
        assert_eq!(next(Status::Accepted, Action::Expire), None, "only undecided referrals expire");
    }
}
