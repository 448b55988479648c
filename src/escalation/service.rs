//! Recording a follow-up, with the up-referral it may propose.

use uuid::Uuid;

use crate::followups::service::{self as followups, Recorded, VisitInput};
use crate::identity::ctx::{Perm, RequestCtx};
use crate::platform::AppResult;
use crate::platform::state::AppState;

/// Records a follow-up of an enrollment of this institution. When it flags the patient, the
/// enrollment's open draft up-referral says what this follow-up found, or a new draft is
/// proposed; the follow-up names it.
pub async fn record_followup(state: &AppState, ctx: &RequestCtx, id: Uuid, input: VisitInput) -> AppResult<Recorded> {
    ctx.require(Perm::FollowupWrite)?;
    let mut tx = state.db.begin(ctx).await?;
    let plan = followups::plan_visit(state, ctx, &tx, id, input).await?;
    let referral = match plan.referral_request() {
        Some(r) => {
            crate::referrals::service::draft_up(&mut tx, ctx, r.open_draft, r.person, r.reason, r.urgent).await?
        }
        None => None,
    };
    let recorded = followups::write_visit(&mut tx, ctx, plan, referral).await?;
    tx.commit().await?;
    Ok(recorded)
}
