//! Every error code the application answers with, each with its one HTTP status. The list is the
//! only place a code is spelled: an `AppError` is built from one of these constants, so a code
//! cannot be misspelled or given a second status, and `docs/architecture.md` lists them all
//! (checked by `tests/api/errors.rs`).

use poem::http::StatusCode;

/// A stable snake_case error code and the status it always answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub status: u16,
}

impl Code {
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.status).expect("a listed status is valid")
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.code == *other
    }
}

macro_rules! codes {
    ($($status:literal => [$($name:ident = $code:literal),+ $(,)?])+) => {
        $($(pub const $name: Code = Code { code: $code, status: $status };)+)+

        /// Every code, grouped by status.
        pub const ALL: &[Code] = &[$($($name),+),+];
    };
}

codes! {
    400 => [
        BAD_REQUEST = "bad_request",
        IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid",
        INVALID_PARAMETER = "invalid_parameter",
        MALFORMED_BODY = "malformed_body",
    ]
    401 => [
        INVALID_CREDENTIALS = "invalid_credentials",
        TOTP_INVALID = "totp_invalid",
        TOTP_REQUIRED = "totp_required",
        UNAUTHENTICATED = "unauthenticated",
    ]
    403 => [
        CSRF_INVALID = "csrf_invalid",
        FORBIDDEN = "forbidden",
        GRANT_EXPIRED = "grant_expired",
        GRANT_MISSING = "grant_missing",
        INSTITUTION_FORBIDDEN = "institution_forbidden",
        NO_ROLES = "no_roles",
        REFERRAL_WRONG_PARTY = "referral_wrong_party",
    ]
    404 => [
        BATCH_NOT_FOUND = "batch_not_found",
        BILL_NOT_FOUND = "bill_not_found",
        DUPLICATE_NOT_FOUND = "duplicate_not_found",
        ENCOUNTER_NOT_FOUND = "encounter_not_found",
        ENROLLMENT_NOT_FOUND = "enrollment_not_found",
        IMPORT_JOB_NOT_FOUND = "import_job_not_found",
        INSTITUTION_NOT_FOUND = "institution_not_found",
        MERGE_NOT_FOUND = "merge_not_found",
        NOT_FOUND = "not_found",
        PAGE_NOT_FOUND = "page_not_found",
        PAYMENT_NOT_FOUND = "payment_not_found",
        PERSON_NOT_FOUND = "person_not_found",
        PRESCRIPTION_NOT_FOUND = "prescription_not_found",
        REFERRAL_NOT_FOUND = "referral_not_found",
        ROLE_BINDING_NOT_FOUND = "role_binding_not_found",
        SUGGESTION_NOT_FOUND = "suggestion_not_found",
        TENANT_NOT_FOUND = "tenant_not_found",
        USER_NOT_FOUND = "user_not_found",
    ]
    405 => [
        METHOD_NOT_ALLOWED = "method_not_allowed",
    ]
    409 => [
        ALREADY_ENROLLED = "already_enrolled",
        CONFLICT = "conflict",
        DIAGNOSIS_DUPLICATE = "diagnosis_duplicate",
        DUPLICATE_ALREADY_RESOLVED = "duplicate_already_resolved",
        ENCOUNTER_CLOSED = "encounter_closed",
        ENROLLMENT_CLOSED = "enrollment_closed",
        FOLLOWUP_EXISTS = "followup_exists",
        IDEMPOTENCY_ANSWER_LOST = "idempotency_answer_lost",
        IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress",
        MERGE_ALREADY_UNDONE = "merge_already_undone",
        MERGE_NOT_REVERSIBLE = "merge_not_reversible",
        NOT_PAID = "not_paid",
        PERIOD_CLOSED = "period_closed",
        PERSON_NOT_ACTIVE = "person_not_active",
        PRESCRIPTION_NOT_DISPENSABLE = "prescription_not_dispensable",
        PROBABLE_MATCH = "probable_match",
        REFERRAL_INVALID_TRANSITION = "referral_invalid_transition",
        RETRY = "retry",
        SUGGESTION_RESOLVED = "suggestion_resolved",
        TOTP_ENABLED = "totp_enabled",
        TOTP_NOT_ENABLED = "totp_not_enabled",
        TOTP_NOT_PENDING = "totp_not_pending",
        USERNAME_TAKEN = "username_taken",
    ]
    413 => [
        PAYLOAD_TOO_LARGE = "payload_too_large",
    ]
    415 => [
        UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type",
    ]
    422 => [
        ADDENDUM_INVALID = "addendum_invalid",
        ALLERGEN_INVALID = "allergen_invalid",
        ALLERGY_CONFLICT = "allergy_conflict",
        AMOUNT_INVALID = "amount_invalid",
        AMOUNT_TOO_LARGE = "amount_too_large",
        BATCH_EXPIRED = "batch_expired",
        BATCH_MISMATCH = "batch_mismatch",
        BIRTH_DATE_INVALID = "birth_date_invalid",
        BIRTH_DATE_REQUIRED = "birth_date_required",
        BREAK_GLASS_REASON_REQUIRED = "break_glass_reason_required",
        CLASSIFICATION_INCONSISTENT = "classification_inconsistent",
        DATE_IN_FUTURE = "date_in_future",
        DATE_INVALID = "date_invalid",
        DATE_OUT_OF_RANGE = "date_out_of_range",
        DAYS_INVALID = "days_invalid",
        DEPARTMENT_INVALID = "department_invalid",
        DIAGNOSIS_CODE_INVALID = "diagnosis_code_invalid",
        DIAGNOSIS_REQUIRED = "diagnosis_required",
        DISPLAY_NAME_INVALID = "display_name_invalid",
        DIVISION_INVALID = "division_invalid",
        DOCTOR_INVALID = "doctor_invalid",
        DOSE_INVALID = "dose_invalid",
        DRUG_NOT_STOCKED = "drug_not_stocked",
        DRUG_NOT_STOCKED_THERE = "drug_not_stocked_there",
        DRUG_UNKNOWN = "drug_unknown",
        DUPLICATE_DRUG = "duplicate_drug",
        ENCOUNTER_INVALID = "encounter_invalid",
        ENCOUNTER_KIND_INVALID = "encounter_kind_invalid",
        EVENT_UNREADABLE = "event_unreadable",
        FEE_ITEM_UNKNOWN = "fee_item_unknown",
        FIELD_INVALID = "field_invalid",
        FOLLOWUP_OUT_OF_ORDER = "followup_out_of_order",
        FREQUENCY_INVALID = "frequency_invalid",
        ICD_CODE_UNKNOWN = "icd_code_unknown",
        IMPORT_COLUMN_MISSING = "import_column_missing",
        IMPORT_FILE_UNREADABLE = "import_file_unreadable",
        IMPORT_MAPPING_INVALID = "import_mapping_invalid",
        IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused",
        INSURANCE_NO_INVALID = "insurance_no_invalid",
        INTERVAL_INVALID = "interval_invalid",
        KPI_UNKNOWN = "kpi_unknown",
        LINES_REQUIRED = "lines_required",
        LINK_NOT_A_MATCH = "link_not_a_match",
        LOT_INVALID = "lot_invalid",
        MERGE_SAME_PERSON = "merge_same_person",
        NAME_INVALID = "name_invalid",
        NEXT_DATE_INVALID = "next_date_invalid",
        NO_COUNTY_HOSPITAL = "no_county_hospital",
        NOTHING_TO_CHARGE = "nothing_to_charge",
        OVERPAYMENT = "overpayment",
        PASSWORD_TOO_WEAK = "password_too_weak",
        PAYMENT_METHOD_INVALID = "payment_method_invalid",
        PERIOD_INVALID = "period_invalid",
        PERIOD_OPEN = "period_open",
        PHONE_INVALID = "phone_invalid",
        PRESCRIPTION_DAYS_EXCEEDED = "prescription_days_exceeded",
        QUANTITY_INVALID = "quantity_invalid",
        REASON_REQUIRED = "reason_required",
        REFERENCE_INVALID = "reference_invalid",
        REFERRAL_DIRECTION_INVALID = "referral_direction_invalid",
        REFUND_EXCEEDS_PAID = "refund_exceeds_paid",
        REFUND_EXCEEDS_UNDISPENSED = "refund_exceeds_undispensed",
        RESIDENT_ID_INVALID = "resident_id_invalid",
        ROLE_NOT_ALLOWED_HERE = "role_not_allowed_here",
        ROLES_REQUIRED = "roles_required",
        SEARCH_CRITERIA_REQUIRED = "search_criteria_required",
        SELF_DEACTIVATION = "self_deactivation",
        SEX_INVALID = "sex_invalid",
        SEX_REQUIRED = "sex_required",
        STOCK_INSUFFICIENT = "stock_insufficient",
        SURVIVOR_NOT_IN_PAIR = "survivor_not_in_pair",
        TEXT_INVALID = "text_invalid",
        TEXT_NUL = "text_nul",
        TO_INSTITUTION_REQUIRED = "to_institution_required",
        TOTP_CODE_WRONG = "totp_code_wrong",
        TRANSFER_SAME_INSTITUTION = "transfer_same_institution",
        USERNAME_INVALID = "username_invalid",
        VALUE_INVALID = "value_invalid",
        VALUE_OUT_OF_RANGE = "value_out_of_range",
        VALUE_REQUIRED = "value_required",
        VITAL_OUT_OF_RANGE = "vital_out_of_range",
        VITALS_EMPTY = "vitals_empty",
    ]
    429 => [
        REVEAL_LIMIT_REACHED = "reveal_limit_reached",
        TOO_MANY_ATTEMPTS = "too_many_attempts",
    ]
    500 => [
        INTERNAL_ERROR = "internal_error",
    ]
    503 => [
        SERVICE_UNAVAILABLE = "service_unavailable",
    ]
}
