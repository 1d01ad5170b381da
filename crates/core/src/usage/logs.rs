//! Request logs as stored and read back.
//!
//! A log is written with its captured bodies apart (`("request_body", id)`)
//! and one entry in each index it belongs to (user, key, organization,
//! model, status class; see [`keyspace::LogIndex`]), all in the flush's
//! transaction. Lists walk the narrowest index their filters name and read
//! only the logs they return ([`timeline`] says how, for audit events too):
//! a user's own logs cost the same however many other users there are.
//!
//! Retention deletes a log with its bodies and entries, a page per
//! transaction, so the gateway's batch writes are never held behind it.

use gatehouse_storage::tuple::{pack, unpack};
use gatehouse_storage::{KeyRange, RangeOptions, TxError};

use super::UsageService;
use crate::keyspace::{self, LogIndex};
use crate::model::accounts::{Role, User};
use crate::model::usage::{LogBodies, RequestLog};
use crate::{Error, Id, Result};
use crate::{codec, timeline};

/// Logs a warehouse feed reads per storage round trip, at most.
const READ_PAGE: usize = 1_000;

/// Filters for request logs; `before` pages backwards by ID.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub user: Option<Id>,
    pub key: Option<Id>,
    pub org: Option<Id>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// `2` for 2xx, … `5` for 5xx.
    pub status_class: Option<u16>,
    pub before: Option<Id>,
    /// The page's size.
    pub limit: usize,
}

/// A page of request logs, newest first, and where the next page starts
/// (`before` it), if there may be more.
#[derive(Debug, Default)]
pub struct LogPage {
    pub items: Vec<RequestLog>,
    pub next: Option<Id>,
}

/// What a query's filters leave to decide on an index entry.
#[derive(Debug, Default)]
struct Filter<'a> {
    user: Option<Id>,
    key: Option<Id>,
    org: Option<Id>,
    model: Option<&'a str>,
    status: Option<u16>,
    class: Option<u16>,
}

impl Filter<'_> {
    /// The narrowest index the filters name (a key's logs are a subset of its
    /// owner's, …), or `None`: walk the logs themselves.
    fn index(&self) -> Option<LogIndex<'_>> {
        if let Some(key) = self.key {
            return Some(LogIndex::Key(key));
        }
        if let Some(user) = self.user {
            return Some(LogIndex::User(user));
        }
        if let Some(org) = self.org {
            return Some(LogIndex::Org(org));
        }
        if let Some(model) = self.model {
            return Some(LogIndex::Model(model));
        }
        self.class
            .or(self.status.map(|s| s / 100))
            .map(LogIndex::StatusClass)
    }

    fn matches(&self, entry: &Entry) -> bool {
        self.user.is_none_or(|u| entry.user == u.0)
            && self.key.is_none_or(|k| entry.key == k.0)
            && self.org.is_none_or(|o| entry.org == o.0)
            && self.model.is_none_or(|m| entry.model == m)
            && self.status.is_none_or(|s| entry.status == u64::from(s))
            && self
                .class
                .is_none_or(|c| entry.status / 100 == u64::from(c))
    }
}

/// An index entry's value: the log's filter fields (organization `0`: none).
struct Entry {
    user: u64,
    key: u64,
    org: u64,
    status: u64,
    model: String,
}

fn entry_value(log: &RequestLog) -> Vec<u8> {
    pack(&(
        log.user_id.0,
        log.key_id.0,
        log.org_id.map_or(0, |o| o.0),
        u64::from(log.status),
        log.model.as_str(),
    ))
}

fn decode_entry(value: &[u8]) -> Option<Entry> {
    let (user, key, org, status, model) = unpack::<(u64, u64, u64, u64, String)>(value).ok()?;
    Some(Entry {
        user,
        key,
        org,
        status,
        model,
    })
}

/// The indexes a log is entered in.
fn indexes_of(log: &RequestLog) -> impl Iterator<Item = LogIndex<'_>> {
    [
        Some(LogIndex::User(log.user_id)),
        Some(LogIndex::Key(log.key_id)),
        log.org_id.map(LogIndex::Org),
        Some(LogIndex::Model(&log.model)),
        Some(LogIndex::StatusClass(log.status / 100)),
    ]
    .into_iter()
    .flatten()
}

/// Cuts the longest of `texts` by half (marking the cut); false when there is
/// nothing left to cut.
fn halve_longest(texts: &mut [&mut Option<String>]) -> bool {
    let longest = texts
        .iter_mut()
        .filter_map(|text| text.as_mut())
        .max_by_key(|text| text.len());
    match longest {
        Some(text) if !text.is_empty() => {
            let mut keep = text.len() / 2;
            while !text.is_char_boundary(keep) {
                keep -= 1;
            }
            text.truncate(keep);
            text.push_str("…[cut to fit]");
            if keep == 0 {
                text.clear();
            }
            true
        }
        _ => false,
    }
}

/// Room for one stored value.
const ROOM: usize = gatehouse_storage::limits::MAX_VALUE_SIZE - 64;

/// `value` encoded within the store's value limit, `cut` making it smaller
/// until it fits.
fn encode_fitting<T: codec::Record + Clone>(
    value: &T,
    cut: impl Fn(&mut T) -> bool,
) -> Result<Vec<u8>> {
    let encoded = codec::encode(value)?;
    if encoded.len() <= ROOM {
        return Ok(encoded);
    }
    let mut value = value.clone();
    for _ in 0..64 {
        if !cut(&mut value) {
            break;
        }
        let encoded = codec::encode(&value)?;
        if encoded.len() <= ROOM {
            return Ok(encoded);
        }
    }
    Err(Error::internal(format!(
        "a {} does not fit in a stored value",
        T::NAME
    )))
}

/// The writes that store `log`: the log without its bodies, the bodies apart
/// (cut to fit a stored value), and its index entries.
pub(super) fn rows_of(log: &RequestLog, rows: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<()> {
    let bodies = (log.request_body.is_some() || log.response_body.is_some()).then(|| LogBodies {
        request: log.request_body.clone(),
        response: log.response_body.clone(),
    });
    let record = RequestLog {
        captured: log.captured || bodies.is_some(),
        request_body: None,
        response_body: None,
        ..log.clone()
    };
    rows.push((
        keyspace::request_log(log.id).as_bytes().to_vec(),
        encode_fitting(&record, |l| halve_longest(&mut [&mut l.error]))?,
    ));
    if let Some(bodies) = bodies {
        rows.push((
            keyspace::request_body(log.id).as_bytes().to_vec(),
            encode_fitting(&bodies, |b| {
                halve_longest(&mut [&mut b.request, &mut b.response])
            })?,
        ));
    }
    let value = entry_value(log);
    for index in indexes_of(log) {
        rows.push((index.entries().entry(log.id), value.clone()));
    }
    Ok(())
}

/// The bounds of a query's ID range: from `from`, up to (not including) the
/// first ID after `to` and `before`.
fn id_bounds(query: &LogQuery) -> (Option<Id>, Option<Id>) {
    let lower = query.from.map(|f| Id::first_at(f.timestamp_millis()));
    let upper = query.to.map(|t| Id::first_at(t.timestamp_millis() + 1));
    let upper = match (upper, query.before) {
        (Some(u), Some(b)) => Some(u.min(b)),
        (u, b) => u.or(b),
    };
    (lower, upper)
}

impl UsageService {
    /// Request logs, newest first, without their bodies. Users see their
    /// own; platform readers and `request_viewer` holders everyone's.
    pub async fn logs(&self, viewer: &User, query: &LogQuery) -> Result<LogPage> {
        if query.status.is_some_and(|s| !(100..=599).contains(&s)) {
            return Err(Error::invalid_input("status is an HTTP status, 100 to 599"));
        }
        if query.status_class.is_some_and(|c| !(1..=5).contains(&c)) {
            return Err(Error::invalid_input("status_class is 1 to 5 (5 for 5xx)"));
        }
        if viewer.is_provider_account() {
            return Err(Error::permission_denied(
                "provider accounts have no request logs",
            ));
        }
        let sees_all = sees_all(viewer);
        if query.user.is_some_and(|u| u != viewer.id) && !sees_all {
            return Err(Error::permission_denied(
                "only platform admins and request viewers read others' request logs",
            ));
        }
        let filter = Filter {
            user: if sees_all {
                query.user
            } else {
                Some(viewer.id)
            },
            key: query.key,
            org: query.org,
            model: query.model.as_deref(),
            status: query.status,
            class: query.status_class,
        };
        let limit = query.limit.clamp(1, crate::page::MAX_LIMIT);
        let bounds = id_bounds(query);
        if bounds.0.is_some_and(|l| bounds.1.is_some_and(|u| l >= u)) {
            return Ok(LogPage::default());
        }
        let (mut items, mut next) = match filter.index() {
            Some(index) => {
                let entries = index.entries();
                let found = timeline::walk_newest(
                    &self.store,
                    timeline::id_range(entries.range(), |id| entries.entry(id), bounds),
                    |key| entries.id_of(key),
                    |value| decode_entry(value).is_some_and(|e| filter.matches(&e)),
                    limit,
                    self.scan_budget,
                )
                .await?;
                let ids: Vec<Id> = found.entries.iter().map(|(id, _)| *id).collect();
                (self.read_logs(&ids).await?, found.next)
            }
            None => {
                // No filter: the logs themselves, newest first.
                let all = keyspace::request_logs();
                let found = timeline::walk_newest(
                    &self.store,
                    timeline::id_range(all, log_key, bounds),
                    |key| unpack::<(String, u64)>(key).ok().map(|(_, id)| Id(id)),
                    |_| true,
                    limit,
                    self.scan_budget,
                )
                .await?;
                let mut logs = Vec::with_capacity(found.entries.len());
                for (_, value) in &found.entries {
                    let mut log: RequestLog = codec::decode(value)?;
                    without_bodies(&mut log);
                    logs.push(log);
                }
                (logs, found.next)
            }
        };
        if items.len() > limit {
            items.truncate(limit);
            next = items.last().map(|l| l.id);
        }
        Ok(LogPage { items, next })
    }

    /// One request log, with its bodies for `request_viewer` holders and the
    /// user who made the call; a log the viewer may not read is not found.
    pub async fn log(&self, viewer: &User, id: Id) -> Result<RequestLog> {
        let found = self
            .store
            .run(|tx| async move {
                let Some(mut log) = keyspace::request_log(id).get(&tx).await? else {
                    return Ok(None);
                };
                let own = log.user_id == viewer.id && !viewer.is_provider_account();
                if !own && !sees_all(viewer) {
                    return Ok(None);
                }
                if log.captured && (own || viewer.roles.contains(&Role::RequestViewer)) {
                    if let Some(bodies) = keyspace::request_body(id).get(&tx).await? {
                        log.request_body = bodies.request;
                        log.response_body = bodies.response;
                    }
                } else if !own && !viewer.roles.contains(&Role::RequestViewer) {
                    // Stored inline by an earlier release, not yet moved.
                    log.request_body = None;
                    log.response_body = None;
                }
                Ok::<_, TxError<Error>>(Some(log))
            })
            .await?;
        found.ok_or_else(|| Error::not_found("request log"))
    }

    /// Up to `limit` request logs with IDs in `after..before`, oldest first,
    /// without bodies: what a warehouse feed reads. Platform readers and
    /// `request_viewer` holders only.
    pub async fn logs_between(
        &self,
        viewer: &User,
        after: Id,
        before: Id,
        limit: usize,
    ) -> Result<Vec<RequestLog>> {
        if !sees_all(viewer) {
            return Err(Error::permission_denied(
                "only platform readers and request viewers stream request logs",
            ));
        }
        let range = KeyRange::new(
            gatehouse_storage::key_after(keyspace::request_log(after).as_bytes()),
            keyspace::request_log(before).as_bytes().to_vec(),
        );
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let options = RangeOptions::limit(limit.clamp(1, READ_PAGE));
        let page = self.store.read_range(&range, options).await?;
        let mut logs = codec::decode_values::<RequestLog>(&page.entries)?;
        logs.iter_mut().for_each(without_bodies);
        Ok(logs)
    }

    /// The logs of `ids` that still exist, in that order, without bodies.
    async fn read_logs(&self, ids: &[Id]) -> Result<Vec<RequestLog>> {
        let logs = self
            .store
            .run(|tx| async move {
                let mut logs = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(mut log) = keyspace::request_log(*id).get(&tx).await? {
                        without_bodies(&mut log);
                        logs.push(log);
                    }
                }
                Ok::<_, TxError<Error>>(logs)
            })
            .await?;
        Ok(logs)
    }

    /// Deletes the request logs older than `days`, with their bodies and
    /// index entries, [`TRIM_PAGE`] per transaction; returns how many.
    pub async fn trim_logs(&self, days: u64) -> Result<usize> {
        timeline::trim(
            &self.store,
            (keyspace::request_logs(), log_key),
            (self.env.clock.now_millis(), days),
            |tx, log: &RequestLog| {
                tx.clear(keyspace::request_body(log.id).as_bytes())?;
                for index in indexes_of(log) {
                    tx.clear(&index.entries().entry(log.id))?;
                }
                Ok(())
            },
        )
        .await
    }

    /// Gives logs stored by earlier releases (bodies inline, no index
    /// entries) the current layout, a page per transaction, resuming where
    /// the last run stopped (its progress is kept under a migration marker).
    /// Returns how many logs were moved.
    pub async fn index_old_logs(&self) -> Result<usize> {
        timeline::reindex(
            &self.store,
            timeline::LOG_INDEX,
            (keyspace::request_logs(), log_key),
            self.env.clock.now(),
            rows_of,
        )
        .await
    }
}

/// The key of log `id`.
fn log_key(id: Id) -> Vec<u8> {
    keyspace::request_log(id).as_bytes().to_vec()
}

/// A log as lists show it: bodies that an earlier release stored inline
/// (not yet moved apart) are left out, and said to be captured.
fn without_bodies(log: &mut RequestLog) {
    log.captured |= log.request_body.is_some() || log.response_body.is_some();
    log.request_body = None;
    log.response_body = None;
}

/// Reads everyone's request logs (metadata; bodies need `request_viewer`).
fn sees_all(viewer: &User) -> bool {
    viewer.is_platform_reader() || viewer.roles.contains(&Role::RequestViewer)
}
