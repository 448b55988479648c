//! What referral events set off: a notification for each institution involved (the sender and
//! the receiver), which their inboxes show as unread. A consumer like any other, so it runs once
//! per event however often the event is delivered.

use chrono::Utc;
use sea_orm::{ActiveModelTrait, Set};
use uuid::Uuid;

use super::entity::referral_notification;
use crate::platform::consumers::Handler;
use crate::platform::events::Envelope;
use crate::platform::{AppError, AppResult, Tx};

pub struct Notifications;

#[async_trait::async_trait]
impl Handler for Notifications {
    fn name(&self) -> &'static str {
        "referral_notifications"
    }

    fn events(&self) -> &'static [&'static str] {
        &["referrals.*"]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> AppResult<()> {
        let referral: Uuid = serde_json::from_value(event.payload["referral"].clone())
            .map_err(|_| AppError::internal(anyhow::anyhow!("referral event without a referral id")))?;
        let mut parties: Vec<Uuid> = Vec::new();
        for key in ["from_institution", "to_institution"] {
            if let Ok(id) = serde_json::from_value::<Uuid>(event.payload[key].clone())
                && !parties.contains(&id)
            {
                parties.push(id);
            }
        }
        for institution in parties {
            referral_notification::ActiveModel {
                tenant_id: Set(event.tenant),
                id: Set(Uuid::now_v7()),
                institution_id: Set(institution),
                referral_id: Set(referral),
                event_id: Set(event.id),
                event_type: Set(event.event_type.clone()),
                created_at: Set(Utc::now()),
                read_at: Set(None),
            }
            .insert(&**tx)
            .await?;
        }
        Ok(())
    }
}
