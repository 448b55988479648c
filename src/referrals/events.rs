//! The events referrals publish, one per transition, all carrying the referral's change; and
//! what they set off here: a notification for each institution involved (the sender and the
//! receiver), which their inboxes show as unread. A consumer like any other, so it runs once per
//! event however often the event is delivered.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, Set};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::domain::{Direction, Status, Urgency};
use super::entity::referral_notification;
use crate::platform::consumers::Handler;
use crate::platform::events::{Envelope, Event, UNREADABLE};
use crate::platform::{AppError, AppResult, Tx};

/// What every referral event says: ids, statuses and times, never the reasons or summaries
/// (free text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralChange {
    /// What the receiver earned from the referred person's first visit, as at completion (an up
    /// referral that was accepted): the base of referral fee sharing.
    pub first_visit_revenue_fen: Option<i64>,
    pub referral: Uuid,
    pub person: Uuid,
    pub direction: Direction,
    pub urgency: Urgency,
    pub from_institution: Uuid,
    pub to_institution: Option<Uuid>,
    /// Out of the county (to a hospital named in free text, not an institution).
    pub external: bool,
    /// The up-referral a down-referral answers.
    pub parent: Option<Uuid>,
    pub status: Status,
    pub previous_status: Option<Status>,
    pub created_at: DateTime<Utc>,
    pub requested_at: Option<DateTime<Utc>>,
    pub sla_due_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub arrived_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Whether a completion summary was written.
    pub summary: bool,
}

/// One event type per transition, each carrying a [`ReferralChange`].
macro_rules! referral_events {
    ($($(#[$doc:meta])* $name:ident = $ty:literal),+ $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
            #[serde(transparent)]
            pub struct $name(pub ReferralChange);

            impl Event for $name {
                const TYPE: &'static str = $ty;
            }
        )+

        /// Every event type referrals publish.
        pub const TYPES: &[&str] = &[$($ty),+];

        impl ReferralChange {
            /// Writes this change as the event of type `event_type` (one of [`TYPES`]).
            pub async fn emit(self, tx: &mut Tx, actor: Option<Uuid>, event_type: &str) -> AppResult<Uuid> {
                let id = self.referral;
                match event_type {
                    $($ty => tx.emit(actor, id, &$name(self)).await,)+
                    other => Err(AppError::internal(anyhow::anyhow!("{other} is not a referral event"))),
                }
            }
        }
    };
}

referral_events! {
    /// Sent to the receiver (created and submitted, or submitted from a draft).
    Requested = "referrals.requested",
    /// The receiver accepted: the access grant opens.
    Accepted = "referrals.accepted",
    /// The receiver declined, with a reason.
    Rejected = "referrals.rejected",
    /// The patient arrived at the receiver.
    Arrived = "referrals.arrived",
    /// Completed (or an out-of-county referral recorded): fee sharing follows an up-referral.
    Completed = "referrals.completed",
    /// The sender withdrew it.
    Cancelled = "referrals.cancelled",
    /// Not decided within the tenant's SLA.
    Expired = "referrals.expired",
}

/// The change any referral event carries; 422 `event_unreadable` for another event.
pub fn change_of(event: &Envelope) -> AppResult<ReferralChange> {
    if !TYPES.contains(&event.event_type.as_str()) {
        return Err(AppError::new(UNREADABLE, format!("{} is not a referral event", event.event_type)));
    }
    event.decode_payload()
}

pub struct Notifications;

#[async_trait::async_trait]
impl Handler for Notifications {
    fn name(&self) -> &'static str {
        "referral_notifications"
    }

    fn events(&self) -> Vec<&'static str> {
        TYPES.to_vec()
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> AppResult<()> {
        let change = change_of(event)?;
        let referral = change.referral;
        let mut parties = vec![change.from_institution];
        parties.extend(change.to_institution.filter(|to| *to != change.from_institution));
        for institution in parties {
            referral_notification::ActiveModel {
                tenant_id: Set(event.tenant),
                id: Set(Uuid::now_v7()),
                institution_id: Set(institution),
                referral_id: Set(referral),
                event_id: Set(event.id),
                event_type: Set(event.event_type.clone()),
                created_at: Set(crate::platform::clock::now()),
                read_at: Set(None),
            }
            .insert(&**tx)
            .await?;
        }
        Ok(())
    }
}

/// Every change to a referral that `institution` sent or received, as it is published on this
/// replica's bus (which sees every replica's events). A slow reader skips what it missed rather
/// than holding the bus up; pages and clients reload the list on any change anyway.
pub fn live(
    state: &crate::platform::state::AppState,
    tenant: Uuid,
    institution: Uuid,
) -> futures::stream::BoxStream<'static, std::sync::Arc<Envelope>> {
    use futures::StreamExt;
    let rx = state.bus.subscribe_local();
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => return Some((ev, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter(move |ev| {
        let mine = ev.tenant == tenant
            && change_of(ev).is_ok_and(|c| c.from_institution == institution || c.to_institution == Some(institution));
        std::future::ready(mine)
    })
    .boxed()
}
