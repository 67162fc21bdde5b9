//! What the API returns: the user object of reference §4.1 and its nested team and organization
//! shapes (SPEC §10.3), plus the stored rows they are built from. No secret lives in these types.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::api::fields;
use crate::clock::{Micros, iso};

/// A `users` row, without the password hash.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub uuid: String,
    pub distinct_id: String,
    pub email: String,
    pub pending_email: Option<String>,
    pub is_email_verified: Option<bool>,
    pub has_password: bool,
    pub first_name: String,
    pub last_name: String,
    pub is_staff: bool,
    pub is_active: bool,
    pub date_joined: Micros,
    pub current_organization_id: Option<i64>,
    pub current_team_id: Option<i64>,
    pub notification_settings: Option<String>,
    pub anonymize_data: Option<bool>,
    pub allow_impersonation: Option<bool>,
    pub toolbar_mode: Option<String>,
    pub events_column_config: String,
    pub has_seen_product_intro_for: Option<String>,
    pub theme_mode: Option<String>,
    pub hedgehog_config: Option<String>,
    pub allow_sidebar_suggestions: Option<bool>,
    pub shortcut_position: Option<String>,
    pub role_at_organization: Option<String>,
    pub passkeys_enabled_for_2fa: Option<bool>,
    /// A confirmed TOTP device exists.
    pub is_2fa_enabled: bool,
    /// (organization id, level) of each membership, in membership order.
    pub memberships: Vec<(i64, i64)>,
    /// Scene personalisations in creation order.
    pub scenes: Vec<ScenePersonalisation>,
}

#[derive(Debug, Clone)]
pub struct OrgRow {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub slug: String,
    pub created_at: Micros,
    pub updated_at: Micros,
}

#[derive(Debug, Clone, Serialize)]
pub struct TeamBasic {
    pub id: i64,
    pub uuid: String,
    pub organization: String,
    pub project_id: i64,
    pub api_token: String,
    pub name: String,
    pub completed_snippet_onboarding: bool,
    pub has_completed_onboarding_for: Option<Value>,
    pub ingested_event: bool,
    pub is_demo: bool,
    pub timezone: &'static str,
    pub access_control: bool,
}

impl TeamBasic {
    pub fn new(
        id: i64,
        uuid: String,
        organization: String,
        api_token: String,
        name: String,
    ) -> Self {
        TeamBasic {
            id,
            uuid,
            organization,
            project_id: id,
            api_token,
            name,
            completed_snippet_onboarding: false,
            has_completed_onboarding_for: None,
            ingested_event: false,
            is_demo: false,
            timezone: "UTC",
            access_control: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OrganizationBasic {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub logo_media_id: Option<String>,
    pub membership_level: i64,
    pub members_can_use_personal_api_keys: bool,
    pub is_active: bool,
    pub is_not_active_reason: Option<String>,
    pub is_pending_deletion: bool,
}

impl OrganizationBasic {
    pub fn new(org: &OrgRow, membership_level: i64) -> Self {
        OrganizationBasic {
            id: org.uuid.clone(),
            name: org.name.clone(),
            slug: org.slug.clone(),
            logo_media_id: None,
            membership_level,
            members_can_use_personal_api_keys: true,
            is_active: true,
            is_not_active_reason: None,
            is_pending_deletion: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: i64,
    pub organization_id: String,
    pub name: String,
}

/// The full organization object of `organization` (SPEC §10.3); PostHog-only fields carry fixed
/// documented values.
#[derive(Debug, Clone, Serialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub logo_media_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub membership_level: Option<i64>,
    pub plugins_access_level: i64,
    pub teams: Vec<TeamBasic>,
    pub projects: Vec<Project>,
    pub available_product_features: Vec<Value>,
    pub is_member_join_email_enabled: bool,
    pub metadata: Value,
    pub customer_id: Option<String>,
    pub enforce_2fa: Option<bool>,
    pub members_can_invite: bool,
    pub members_can_use_personal_api_keys: bool,
    pub allow_publicly_shared_resources: bool,
    pub member_count: i64,
    pub is_ai_data_processing_approved: Option<bool>,
    pub default_experiment_stats_method: &'static str,
    pub default_anonymize_ips: bool,
    pub default_role_id: Option<String>,
    pub is_active: bool,
    pub is_not_active_reason: Option<String>,
}

impl Organization {
    pub fn new(
        org: &OrgRow,
        membership_level: Option<i64>,
        teams: Vec<TeamBasic>,
        member_count: i64,
    ) -> Self {
        let projects = teams
            .iter()
            .map(|t| Project {
                id: t.id,
                organization_id: org.uuid.clone(),
                name: t.name.clone(),
            })
            .collect();
        Organization {
            id: org.uuid.clone(),
            name: org.name.clone(),
            slug: org.slug.clone(),
            logo_media_id: None,
            created_at: iso(org.created_at),
            updated_at: iso(org.updated_at),
            membership_level,
            plugins_access_level: 0,
            teams,
            projects,
            available_product_features: Vec::new(),
            is_member_join_email_enabled: true,
            metadata: Value::Object(Default::default()),
            customer_id: None,
            enforce_2fa: None,
            members_can_invite: true,
            members_can_use_personal_api_keys: true,
            allow_publicly_shared_resources: true,
            member_count,
            is_ai_data_processing_approved: None,
            default_experiment_stats_method: "bayesian",
            default_anonymize_ips: false,
            default_role_id: None,
            is_active: true,
            is_not_active_reason: None,
        }
    }
}

/// The `{"id","name","slug","logo_media_id","created_at","updated_at"}` shape the CLI prints.
#[derive(Debug, Clone, Serialize)]
pub struct OrgSummary {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub logo_media_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&OrgRow> for OrgSummary {
    fn from(o: &OrgRow) -> Self {
        OrgSummary {
            id: o.uuid.clone(),
            name: o.name.clone(),
            slug: o.slug.clone(),
            logo_media_id: None,
            created_at: iso(o.created_at),
            updated_at: iso(o.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ScenePersonalisation {
    pub scene: String,
    pub dashboard: Option<i64>,
}

/// Everything about a user that lives outside its own row.
#[derive(Debug, Clone, Default)]
pub struct UserContext {
    pub team: Option<TeamBasic>,
    pub organization: Option<Organization>,
    pub organizations: Vec<OrganizationBasic>,
    pub scene_personalisation: Vec<ScenePersonalisation>,
    pub is_2fa_enabled: bool,
}

/// The user object, fields in the order of reference §4.1.
#[derive(Debug, Serialize)]
pub struct UserOut {
    pub date_joined: String,
    pub uuid: String,
    pub distinct_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub pending_email: Option<String>,
    pub is_email_verified: Option<bool>,
    pub notification_settings: Box<RawValue>,
    pub anonymize_data: Option<bool>,
    pub allow_impersonation: Option<bool>,
    pub toolbar_mode: Option<String>,
    pub has_password: bool,
    pub id: i64,
    pub is_staff: bool,
    pub is_impersonated: bool,
    pub is_impersonated_until: Option<String>,
    pub is_impersonated_read_only: Option<bool>,
    pub sensitive_session_expires_at: Option<String>,
    pub team: Option<TeamBasic>,
    pub organization: Option<Organization>,
    pub organizations: Vec<OrganizationBasic>,
    pub events_column_config: Box<RawValue>,
    pub is_2fa_enabled: bool,
    pub has_social_auth: bool,
    pub has_sso_enforcement: bool,
    pub has_seen_product_intro_for: Option<Box<RawValue>>,
    pub scene_personalisation: Vec<ScenePersonalisation>,
    pub theme_mode: Option<String>,
    pub hedgehog_config: Option<Box<RawValue>>,
    pub allow_sidebar_suggestions: Option<bool>,
    pub shortcut_position: Option<String>,
    pub role_at_organization: Option<String>,
    pub passkeys_enabled_for_2fa: Option<bool>,
    /// Only in the CLI's output (SPEC §10.6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_active: Option<bool>,
}

/// Stored JSON passed through as is: checked, not rebuilt (a user object is serialized far
/// more often than it is written).
fn raw_json(text: Option<&str>) -> Option<Box<RawValue>> {
    text.and_then(|t| RawValue::from_string(t.to_owned()).ok())
}

/// `notification_settings` as shown: `{**defaults, **stored}` (reference §4.3). Users who never
/// wrote any share one rendering of the defaults.
fn notification_settings(stored: Option<&str>) -> Box<RawValue> {
    static DEFAULTS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = stored.and_then(|t| match serde_json::from_str(t) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    });
    let text = match stored {
        None => DEFAULTS
            .get_or_init(|| {
                serde_json::to_string(&fields::notification_settings_for_output(None))
                    .unwrap_or_default()
            })
            .clone(),
        Some(map) => serde_json::to_string(&fields::notification_settings_for_output(Some(&map)))
            .unwrap_or_default(),
    };
    RawValue::from_string(text).unwrap_or_else(|_| empty_object())
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

impl UserOut {
    pub fn new(
        user: UserRow,
        ctx: UserContext,
        sensitive_session_expires_at: Option<Micros>,
    ) -> Self {
        UserOut {
            date_joined: iso(user.date_joined),
            uuid: user.uuid,
            distinct_id: user.distinct_id,
            first_name: user.first_name,
            last_name: user.last_name,
            email: user.email,
            pending_email: user.pending_email,
            is_email_verified: user.is_email_verified,
            notification_settings: notification_settings(user.notification_settings.as_deref()),
            anonymize_data: user.anonymize_data,
            allow_impersonation: user.allow_impersonation,
            toolbar_mode: user.toolbar_mode,
            has_password: user.has_password,
            id: user.id,
            is_staff: user.is_staff,
            is_impersonated: false,
            is_impersonated_until: None,
            is_impersonated_read_only: None,
            sensitive_session_expires_at: sensitive_session_expires_at.map(iso),
            team: ctx.team,
            organization: ctx.organization,
            organizations: ctx.organizations,
            events_column_config: raw_json(Some(&user.events_column_config))
                .unwrap_or_else(empty_object),
            is_2fa_enabled: ctx.is_2fa_enabled,
            has_social_auth: false,
            has_sso_enforcement: false,
            has_seen_product_intro_for: raw_json(user.has_seen_product_intro_for.as_deref()),
            scene_personalisation: ctx.scene_personalisation,
            theme_mode: user.theme_mode,
            hedgehog_config: raw_json(user.hedgehog_config.as_deref()),
            allow_sidebar_suggestions: user.allow_sidebar_suggestions,
            shortcut_position: Some(user.shortcut_position.unwrap_or_else(|| "above".into())),
            role_at_organization: user.role_at_organization,
            passkeys_enabled_for_2fa: user.passkeys_enabled_for_2fa,
            is_active: None,
        }
    }
}

/// A personal API key as shown by the API and the CLI (SPEC §10.3); `value` only on create/roll.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyOut {
    pub id: String,
    pub label: String,
    pub description: Option<String>,
    pub value: Option<String>,
    pub mask_value: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub last_rolled_at: Option<String>,
    pub user_id: i64,
    pub is_legacy_hashing: bool,
    pub scopes: Vec<String>,
    pub scoped_organizations: Option<Vec<String>>,
    pub scoped_teams: Option<Vec<i64>>,
    pub local_dev_value: Option<String>,
}
