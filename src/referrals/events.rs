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
    let institution = institution.to_string();
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
        let p = &ev.payload;
        let mine = p["from_institution"].as_str() == Some(institution.as_str())
            || p["to_institution"].as_str() == Some(institution.as_str());
        std::future::ready(ev.tenant == tenant && ev.event_type.starts_with("referrals.") && mine)
    })
    .boxed()
}
