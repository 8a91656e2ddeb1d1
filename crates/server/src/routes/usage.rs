//! `GET /v1/sessions/history`: the team's session usage by period (hour,
//! day, week or month), from the sessions the store keeps. Of upstream's
//! metrics, this server tracks the number of sessions and their hours; the
//! others (proxy bytes, AI steps, credits, screenshots, network bytes) are
//! accepted and left out of the answer, never invented.

use std::collections::BTreeMap;

use anchorage_core::Timestamp;
use anchorage_store::{SessionFilter, SessionPage, SessionSort};
use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

use super::extract::QueryMap;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{UsageHistory, UsagePagination, UsagePoint, UsageSummary};

/// Upstream's metric names; the first two are tracked here.
const METRICS: [&str; 7] = [
    "session_count",
    "session_hours",
    "proxy_bytes",
    "ai_steps",
    "credits_used",
    "screenshots",
    "network_bytes_total",
];

#[derive(Clone, Copy)]
enum Granularity {
    Hour,
    Day,
    Week,
    Month,
}

impl Granularity {
    /// The period `at` falls in: its start (as a sort key) and its label.
    fn period(self, at: DateTime<Utc>) -> (i64, String) {
        let day = at.date_naive();
        match self {
            Self::Hour => {
                let start = at
                    .with_minute(0)
                    .and_then(|at| at.with_second(0))
                    .and_then(|at| at.with_nanosecond(0))
                    .unwrap_or(at);
                (start.timestamp(), start.format("%Y-%m-%dT%H:00:00Z").to_string())
            }
            Self::Day => (
                day.and_hms_opt(0, 0, 0).map_or(0, |start| start.and_utc().timestamp()),
                day.to_string(),
            ),
            Self::Week => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (
                    monday
                        .and_hms_opt(0, 0, 0)
                        .map_or(0, |start| start.and_utc().timestamp()),
                    monday.to_string(),
                )
            }
            Self::Month => (
                i64::from(day.year()) * 12 + i64::from(day.month0()),
                format!("{:04}-{:02}", day.year(), day.month()),
            ),
        }
    }
}

/// `GET /v1/sessions/history`.
#[utoipa::path(
    operation_id = "get_sessions_history",
    get,
    path = "/v1/sessions/history",
    tag = "sessions",
    summary = "The team's session usage by period",
    params(
        ("from_date" = Option<String>, Query, description = "Start of the range (ISO 8601; default 30 days before to_date)"),
        ("to_date" = Option<String>, Query, description = "End of the range (ISO 8601; default now)"),
        ("granularity" = Option<String>, Query, description = "hour, day (default), week or month"),
        ("metrics" = Option<String>, Query, description = "Comma-separated; session_count and session_hours are tracked, the others are left out"),
        ("page" = Option<i64>, Query, description = "Page of periods, from 1"),
        ("limit" = Option<i64>, Query, description = "Periods per page, 1 to 1000 (default 100)"),
    ),
    security(("api_key" = [])),
    responses((status = 200, description = "The periods, totals and paging", body = UsageHistory))
)]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<UsageHistory>, ApiError> {
    let query = QueryMap::parse(query.as_deref());
    let to = query.timestamp("to_date")?.unwrap_or_else(Timestamp::now);
    let from = query
        .timestamp("from_date")?
        .unwrap_or_else(|| Timestamp::from_millis(to.as_millis() - 30 * 24 * 3600 * 1000));
    if from.as_millis() > to.as_millis() {
        return Err(ApiError::BadRequest("from_date must not be after to_date".to_owned()));
    }
    let granularity = match query.get("granularity").unwrap_or("day") {
        "hour" => Granularity::Hour,
        "day" => Granularity::Day,
        "week" => Granularity::Week,
        "month" => Granularity::Month,
        _ => {
            return Err(ApiError::BadRequest(
                "granularity must be hour, day, week or month".to_owned(),
            ))
        }
    };
    let metrics = query.list("metrics");
    if let Some(unknown) = metrics.iter().find(|name| !METRICS.contains(&name.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "metrics: {unknown:?} is not one of {}",
            METRICS.join(", ")
        )));
    }
    let wants = |name: &str| metrics.is_empty() || metrics.iter().any(|wanted| wanted == name);
    let page = query.integer("page", 1, 1_000_000)?.unwrap_or(1);
    let limit = query.integer("limit", 1, 1000)?.unwrap_or(100);

    let filter = SessionFilter {
        team_id: Some(caller.0.team_id),
        created_from: Some(from),
        created_to: Some(to),
        ..SessionFilter::default()
    };
    let everything = SessionPage {
        sort: SessionSort::CreatedAt,
        descending: false,
        page: 1,
        limit: None,
    };
    let (sessions, _) = state.store.list_sessions(&filter, &everything).await?;
    let now = Timestamp::now().as_millis();
    let mut periods: BTreeMap<i64, (String, f64, f64)> = BTreeMap::new();
    for session in &sessions {
        let created = Utc
            .timestamp_millis_opt(session.created_at.as_millis())
            .single()
            .unwrap_or_default();
        let ran_ms = session.started_at.map_or(0, |started| {
            session.ended_at.map_or(now, |ended| ended.as_millis()) - started.as_millis()
        });
        let (key, label) = granularity.period(created);
        let entry = periods.entry(key).or_insert((label, 0.0, 0.0));
        entry.1 += 1.0;
        entry.2 += ran_ms.max(0) as f64 / 3_600_000.0;
    }
    let total_records = periods.len() as i64;
    let total_pages = (total_records + limit - 1) / limit;
    let data = periods
        .values()
        .skip(((page - 1) * limit) as usize)
        .take(limit as usize)
        .map(|(date, count, hours)| UsagePoint {
            date: date.clone(),
            session_count: wants("session_count").then_some(*count),
            session_hours: wants("session_hours").then_some(*hours),
        })
        .collect();
    let (total_sessions, total_hours) = periods
        .values()
        .fold((0.0, 0.0), |(count, hours), point| (count + point.1, hours + point.2));
    Ok(Json(UsageHistory {
        data,
        summary: UsageSummary {
            total_sessions: wants("session_count").then_some(total_sessions),
            total_session_hours: wants("session_hours").then_some(total_hours),
        },
        pagination: UsagePagination {
            current_page: page,
            total_pages,
            total_records,
            has_next: page < total_pages,
            has_prev: page > 1,
        },
    }))
}
