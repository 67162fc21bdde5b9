//! Prometheus metrics (SPEC §7, §10.7) and `GET /metrics`.
//!
//! The registry is a value inside `App` rather than process-global state, so every server (and
//! every in-process test server) counts on its own. Label values are `&'static str` or numbers
//! only: the route label is the route *template*, the method is one of the standard methods or
//! `other`, so no client can grow the number of series by sending odd paths or methods.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::app::App;
use crate::error::{Error, Result};
use crate::http::body::Body;

/// Latency buckets in seconds: sub-millisecond reads up to argon2 logins under load.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests that matched no route (404, and 413 decided before routing);
/// the request log line uses the same value.
pub const NO_ROUTE: &str = "-";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// How a `POST /api/login/` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Password accepted, session created.
    Success,
    /// Password accepted, the account has 2FA: a pending login was started.
    SecondFactorRequired,
    /// Unknown email or wrong password.
    InvalidCredentials,
    /// Refused by the failed-login lockout before the password was checked.
    Locked,
}

impl LoginOutcome {
    const ALL: [LoginOutcome; 4] = [
        LoginOutcome::Success,
        LoginOutcome::SecondFactorRequired,
        LoginOutcome::InvalidCredentials,
        LoginOutcome::Locked,
    ];

    fn label(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::SecondFactorRequired => "two_factor_required",
            LoginOutcome::InvalidCredentials => "invalid_credentials",
            LoginOutcome::Locked => "locked",
        }
    }
}

/// A 2FA event: the second step of a login, or a change to the user's 2FA setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoFactorOutcome {
    /// Login completed with a TOTP code.
    LoginTotp,
    /// Login completed with a backup code.
    LoginBackupCode,
    /// Login step refused: wrong, reused or missing code.
    LoginInvalid,
    /// Login step refused by the consecutive-failure lockout.
    LoginLocked,
    /// Setup confirmed: the user now has a TOTP device.
    Enabled,
    /// Setup confirmation refused (wrong code, or the pending secret expired).
    SetupFailed,
    /// A new batch of backup codes was issued.
    BackupCodesGenerated,
    /// 2FA removed.
    Disabled,
}

impl TwoFactorOutcome {
    const ALL: [TwoFactorOutcome; 8] = [
        TwoFactorOutcome::LoginTotp,
        TwoFactorOutcome::LoginBackupCode,
        TwoFactorOutcome::LoginInvalid,
        TwoFactorOutcome::LoginLocked,
        TwoFactorOutcome::Enabled,
        TwoFactorOutcome::SetupFailed,
        TwoFactorOutcome::BackupCodesGenerated,
        TwoFactorOutcome::Disabled,
    ];

    fn label(self) -> &'static str {
        match self {
            TwoFactorOutcome::LoginTotp => "login_totp",
            TwoFactorOutcome::LoginBackupCode => "login_backup_code",
            TwoFactorOutcome::LoginInvalid => "login_invalid",
            TwoFactorOutcome::LoginLocked => "login_locked",
            TwoFactorOutcome::Enabled => "enabled",
            TwoFactorOutcome::SetupFailed => "setup_failed",
            TwoFactorOutcome::BackupCodesGenerated => "backup_codes_generated",
            TwoFactorOutcome::Disabled => "disabled",
        }
    }
}

type DurationFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

/// The service's metrics. Cheap to clone: every clone counts into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    durations: DurationFamily,
    logins: Family<OutcomeLabels, Counter>,
    two_factor: Family<OutcomeLabels, Counter>,
    throttled: Family<KindLabels, Counter>,
    queue_depth: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let requests = Family::<HttpLabels, Counter>::default();
        let durations: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let logins = Family::<OutcomeLabels, Counter>::default();
        let two_factor = Family::<OutcomeLabels, Counter>::default();
        let throttled = Family::<KindLabels, Counter>::default();
        let queue_depth = Gauge::default();

        // Every known outcome is exported from the start (at 0), so `rate()` and alerts work
        // from the first event rather than from the second.
        for o in LoginOutcome::ALL {
            drop(logins.get_or_create(&OutcomeLabels { outcome: o.label() }));
        }
        for o in TwoFactorOutcome::ALL {
            drop(two_factor.get_or_create(&OutcomeLabels { outcome: o.label() }));
        }

        // Counters are registered without `_total`: the encoder appends it (and 0.26 refuses a
        // name that already ends in it).
        let mut registry = Registry::default();
        registry.register(
            "usersvc_http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "usersvc_http_request_duration_seconds",
            "HTTP request latency in seconds by method, route template and status",
            durations.clone(),
        );
        registry.register(
            "usersvc_logins",
            "Password logins (POST /api/login/) by outcome",
            logins.clone(),
        );
        registry.register(
            "usersvc_two_factor",
            "2FA login steps and 2FA setup changes by outcome",
            two_factor.clone(),
        );
        registry.register(
            "usersvc_throttled",
            "Requests refused by a throttle or lockout, by throttle kind",
            throttled.clone(),
        );
        registry.register(
            "usersvc_db_write_queue_depth",
            "Database writes queued but not yet committed",
            queue_depth.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                durations,
                logins,
                two_factor,
                throttled,
                queue_depth,
            }),
        }
    }

    /// Counts one answered request and its latency.
    pub fn request(&self, method: &Method, route: &'static str, status: u16, elapsed: Duration) {
        let labels = HttpLabels {
            method: method_label(method),
            route,
            status,
        };
        self.inner.requests.get_or_create(&labels).inc();
        self.inner
            .durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub fn login(&self, outcome: LoginOutcome) {
        self.inner
            .logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    pub fn two_factor(&self, outcome: TwoFactorOutcome) {
        self.inner
            .two_factor
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Counts one request refused by the throttle or lockout `kind` (e.g. `current_password`,
    /// `login`, `2fa`).
    pub fn throttled(&self, kind: &'static str) {
        self.inner
            .throttled
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// The registry in the Prometheus text format 0.0.4, with the write queue depth read now.
    pub fn encode(&self, queue_depth: usize) -> Result<String> {
        self.inner
            .queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.inner.registry).map_err(Error::internal)?;
        Ok(text)
    }
}

/// The standard methods as themselves, anything else as `other` (bounded label values).
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// `GET /metrics`: the Prometheus text format (version 0.0.4), which Prometheus and every
/// compatible scraper read.
pub fn render(app: &App) -> Result<Response<Body>> {
    let text = app.metrics.encode(app.db.queue_depth())?;
    let mut res = Response::new(Body::new(Bytes::from(text)));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_labels_and_independent_registries() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.request(
            &Method::GET,
            "/api/users/{id}/",
            200,
            Duration::from_millis(3),
        );
        a.request(
            &Method::from_bytes(b"BREW").unwrap(),
            NO_ROUTE,
            404,
            Duration::ZERO,
        );
        a.login(LoginOutcome::Success);
        a.two_factor(TwoFactorOutcome::LoginBackupCode);
        a.throttled("current_password");
        let text = a.encode(7).unwrap();
        for line in [
            "# TYPE usersvc_http_requests_total counter",
            r#"usersvc_http_requests_total{method="GET",route="/api/users/{id}/",status="200"} 1"#,
            r#"usersvc_http_requests_total{method="other",route="-",status="404"} 1"#,
            "# TYPE usersvc_http_request_duration_seconds histogram",
            r#"usersvc_http_request_duration_seconds_bucket{method="GET",route="/api/users/{id}/",status="200",le="0.005"} 1"#,
            r#"usersvc_http_request_duration_seconds_count{method="GET",route="/api/users/{id}/",status="200"} 1"#,
            r#"usersvc_logins_total{outcome="success"} 1"#,
            r#"usersvc_logins_total{outcome="locked"} 0"#,
            r#"usersvc_two_factor_total{outcome="login_backup_code"} 1"#,
            r#"usersvc_throttled_total{kind="current_password"} 1"#,
            "usersvc_db_write_queue_depth 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // A second registry has counted nothing.
        let other = b.encode(0).unwrap();
        assert!(
            other.contains(r#"usersvc_logins_total{outcome="success"} 0"#),
            "{other}"
        );
        assert!(!other.contains("usersvc_http_requests_total{"), "{other}");
    }

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").unwrap()),
            "other"
        );
    }
}
