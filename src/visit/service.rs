//! Visit use cases that read or write across clinical, pharmacy and billing.

use std::collections::HashMap;

use chrono::Duration;
use uuid::Uuid;

use crate::billing::service::BillView;
use crate::clinical::entity::{addendum, allergy, diagnosis, encounter, vital_sign};
use crate::clinical::service::{self as clinical, SummaryEncounter};
use crate::identity::ctx::{Perm, RequestCtx};
use crate::pharmacy::service::{self as pharmacy, DispensedLine, PrescriptionView};
use crate::platform::audit::{Outcome, Purpose};
use crate::platform::codes;
use crate::platform::state::AppState;
use crate::platform::{AppError, AppResult, Tx};

/// An encounter whole: what was recorded, prescribed and billed.
#[derive(Debug, Clone)]
pub struct EncounterView {
    pub encounter: encounter::Model,
    pub vitals: Vec<vital_sign::Model>,
    pub diagnoses: Vec<diagnosis::Model>,
    pub addenda: Vec<addendum::Model>,
    pub prescriptions: Vec<PrescriptionView>,
    pub bill: Option<BillView>,
}

impl EncounterView {
    async fn of(tx: &Tx, e: encounter::Model, bill: Option<BillView>) -> AppResult<Self> {
        let prescriptions = pharmacy::prescriptions_of(tx, e.id).await?;
        let r = clinical::record_of(tx, e).await?;
        Ok(Self {
            encounter: r.encounter,
            vitals: r.vitals,
            diagnoses: r.diagnoses,
            addenda: r.addenda,
            prescriptions,
            bill,
        })
    }
}

/// One encounter of the caller's institution; a refusal is audited as a denied read.
pub async fn encounter(state: &AppState, ctx: &RequestCtx, id: Uuid) -> AppResult<EncounterView> {
    ctx.require(Perm::EncounterRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let e = match clinical::own_encounter(&tx, ctx, id).await {
        Ok(e) => e,
        Err(err) => {
            tx.audit(
                ctx.audit("encounter.read", "encounter", Purpose::Treatment).resource(id).outcome(Outcome::Denied),
            );
            tx.commit().await?;
            return Err(err);
        }
    };
    let bill = crate::billing::service::bill_of_encounter(&tx, id).await?;
    let view = EncounterView::of(&tx, e, bill).await?;
    tx.audit(
        ctx.audit("encounter.read", "encounter", Purpose::Treatment).resource(id).subject(view.encounter.person_id),
    );
    tx.commit().await?;
    Ok(view)
}

/// A person's encounters at one institution, whole but without bills (for a referral grant's
/// reader, who sees the clinical record, not the money).
pub async fn records_at(tx: &Tx, person: Uuid, institution: Uuid) -> AppResult<Vec<EncounterView>> {
    let mut out = Vec::new();
    for e in clinical::encounters_at(tx, person, institution, 50).await? {
        out.push(EncounterView::of(tx, e, None).await?);
    }
    Ok(out)
}

/// A person's record across the whole community, with the prescriptions of the last 180 days.
#[derive(Debug, Clone)]
pub struct CommunitySummary {
    pub person_id: Uuid,
    pub allergies: Vec<allergy::Model>,
    pub encounters: Vec<SummaryEncounter>,
    pub recent_vitals: Vec<vital_sign::Model>,
    pub medications: Vec<PrescriptionView>,
}

/// The community summary, for a clinician whose institution has the person registered or who
/// broke the glass. Every read is audited, refusals included.
pub async fn community_summary(state: &AppState, ctx: &RequestCtx, person: Uuid) -> AppResult<CommunitySummary> {
    ctx.require(Perm::EncounterRead)?;
    let mut tx = state.db.begin(ctx).await?;
    let Some(purpose) = clinical::summary_purpose(&tx, ctx, person).await? else {
        tx.audit(ctx.audit("patient.summary", "person", Purpose::Treatment).resource(person).outcome(Outcome::Denied));
        tx.commit().await?;
        return Err(AppError::new(codes::PERSON_NOT_FOUND, "no such person registered at your institution"));
    };
    let ids = crate::patients::service::person_and_merged(&tx, person).await?;
    let clinical = clinical::clinical_summary(&tx, &ids).await?;
    let mut medications = Vec::new();
    for id in &ids {
        medications
            .extend(pharmacy::medications_of(&tx, *id, crate::platform::clock::now() - Duration::days(180)).await?);
    }
    let summary = CommunitySummary {
        person_id: person,
        allergies: clinical.allergies,
        encounters: clinical.encounters,
        recent_vitals: clinical.recent_vitals,
        medications,
    };
    tx.audit(ctx.audit("patient.summary", "person", purpose).resource(person).subject(person));
    tx.commit().await?;
    Ok(summary)
}

/// Dispenses a prescription of the caller's institution once its charges are paid: first expiry
/// first out, or from the batches named per line.
pub async fn dispense(
    state: &AppState,
    ctx: &RequestCtx,
    id: Uuid,
    pinned: HashMap<Uuid, Uuid>,
) -> AppResult<Vec<DispensedLine>> {
    ctx.require(Perm::Dispense)?;
    let mut tx = state.db.begin(ctx).await?;
    let p = pharmacy::dispensable_prescription(&tx, ctx, id).await?;
    if !crate::billing::service::prescription_paid(&tx, id).await? {
        return Err(AppError::new(codes::NOT_PAID, "the prescription's charges must be paid before dispensing"));
    }
    let out = pharmacy::dispense_in(&mut tx, ctx, p, pinned).await?;
    tx.commit().await?;
    Ok(out)
}
