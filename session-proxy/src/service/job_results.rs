//! A job as people read it: each host's result with the tail of its
//! stdout and stderr (kept apart), and the hosts grouped by identical
//! outcome (status, exit, error, and the digest of the whole stdout and
//! stderr) so 200 results read as a few lines.

use std::collections::HashMap;

use shellway_common::api::jobs::{Job, JobGroup, JobHost, JobSummary};
use uuid::Uuid;

use super::ServiceError;
use crate::state::AppState;
use crate::store::{self, jobs::JobRow};

/// Bytes of each stream shown as a tail.
pub(crate) const TAIL_BYTES: usize = 2048;

pub(crate) fn summary(row: &JobRow) -> JobSummary {
    let counts: std::collections::BTreeMap<String, i64> =
        serde_json::from_value(row.counts.0.clone()).unwrap_or_default();
    JobSummary {
        id: row.id,
        owner: row.owner.clone(),
        kind: row.kind.clone(),
        label: row.label.clone(),
        status: row.status.clone(),
        strategy: row.strategy.clone(),
        concurrency: row.concurrency,
        rerun_of: row.rerun_of,
        created_at: row.created_at,
        ended_at: row.ended_at,
        hosts: counts.values().sum(),
        counts,
    }
}

/// The last `TAIL_BYTES` of `bytes`, as text.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Each host's result with the tails of its streams, not grouped (what
/// the job WebSocket and the service panels show while a job runs): no
/// digest of anyone's whole output is taken.
pub(crate) async fn host_results(st: &AppState, job: Uuid) -> Result<Vec<JobHost>, ServiceError> {
    let hosts = store::jobs::hosts(&st.db, job).await?;
    results_of(st, &hosts).await
}

async fn results_of(
    st: &AppState,
    hosts: &[store::jobs::JobHostRow],
) -> Result<Vec<JobHost>, ServiceError> {
    let sessions: Vec<Uuid> = hosts.iter().filter_map(|h| h.session_id).collect();
    let mut tails: HashMap<(Uuid, String), Vec<u8>> = HashMap::new();
    for (session, stream, data) in store::jobs::tails(&st.db, &sessions, TAIL_BYTES as i64).await? {
        tails.entry((session, stream)).or_default().extend(data);
    }
    Ok(hosts
        .iter()
        .map(|h| {
            let out = |stream: &str| {
                h.session_id
                    .and_then(|s| tails.get(&(s, stream.to_owned())))
                    .map(|b| tail(b))
                    .unwrap_or_default()
            };
            JobHost {
                host_id: h.host_id,
                host_name: h.host_name.clone(),
                account: h.account.clone(),
                position: h.position,
                status: h.status.clone(),
                session_id: h.session_id,
                exit_code: h.exit_code,
                exit_signal: h.exit_signal.clone(),
                failed_step: h.failed_step,
                error: h.error.clone(),
                started_at: h.started_at,
                ended_at: h.ended_at,
                duration_ms: h.duration_ms,
                stdout_tail: out("stdout"),
                stderr_tail: out("stderr"),
                group: None,
            }
        })
        .collect())
}

/// The job with every host's result and the hosts grouped by outcome.
pub(crate) async fn detail(st: &AppState, row: &JobRow) -> Result<Job, ServiceError> {
    let hosts = store::jobs::hosts(&st.db, row.id).await?;
    let mut results = results_of(st, &hosts).await?;
    let digests = digests(st, row.id, &hosts).await?;
    let keys: Vec<Option<GroupKey>> = results
        .iter()
        .map(|h| {
            ended(&h.status).then(|| {
                let [stdout, stderr] = digests.get(&h.host_id).cloned().unwrap_or_default();
                GroupKey {
                    status: h.status.clone(),
                    exit_code: h.exit_code,
                    exit_signal: h.exit_signal.clone(),
                    error: h.error.clone(),
                    stdout,
                    stderr,
                }
            })
        })
        .collect();
    let groups = group(&keys);
    let mut out_groups = Vec::with_capacity(groups.len());
    for (gi, members) in groups.iter().enumerate() {
        let first = &results[members[0]];
        out_groups.push(JobGroup {
            status: first.status.clone(),
            exit_code: first.exit_code,
            exit_signal: first.exit_signal.clone(),
            error: first.error.clone(),
            count: members.len(),
            hosts: members.iter().map(|&i| results[i].host_id).collect(),
            stdout_tail: first.stdout_tail.clone(),
            stderr_tail: first.stderr_tail.clone(),
        });
        for &i in members {
            results[i].group = Some(gi);
        }
    }
    Ok(Job {
        summary: summary(row),
        request: row.spec.0["request"].clone(),
        batch: row.batch.clone(),
        max_failures: row.max_failures.clone(),
        keep_going: row.keep_going,
        host_results: results,
        groups: out_groups,
    })
}

/// How long after a host ended its recording is taken as complete (the
/// recorders commit within a fraction of a second), so that its digests
/// are kept rather than computed again.
const SETTLED: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The digests of each ended host's whole `[stdout, stderr]`, by host: kept
/// in `job_hosts` once computed, so a read of a job costs the same however
/// much its hosts printed.
async fn digests(
    st: &AppState,
    job: Uuid,
    hosts: &[store::jobs::JobHostRow],
) -> Result<HashMap<Uuid, [String; 2]>, ServiceError> {
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    for h in hosts.iter().filter(|h| ended(&h.status)) {
        match (&h.stdout_digest, &h.stderr_digest, h.session_id) {
            (Some(o), Some(e), _) => {
                out.insert(h.host_id, [o.clone(), e.clone()]);
            }
            (_, _, Some(session)) => missing.push((h, session)),
            _ => {}
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let sessions: Vec<Uuid> = missing.iter().map(|(_, s)| *s).collect();
    let mut computed = store::jobs::stream_digests(&st.db, &sessions).await?;
    let settled = chrono::Utc::now() - SETTLED;
    let mut keep = Vec::new();
    for (h, session) in missing {
        let Some(d) = computed.remove(&session) else {
            continue;
        };
        if h.ended_at.is_some_and(|at| at < settled) {
            keep.push((h.host_id, d.clone()));
        }
        out.insert(h.host_id, d);
    }
    if !keep.is_empty() {
        store::jobs::save_digests(&st.db, job, &keep).await?;
    }
    Ok(out)
}

fn ended(status: &str) -> bool {
    !matches!(status, "queued" | "running")
}

/// What makes two ended hosts alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    status: String,
    exit_code: Option<i32>,
    exit_signal: Option<String>,
    error: Option<String>,
    stdout: String,
    stderr: String,
}

/// Indexes of alike hosts (`None`: not ended, in no group), biggest group
/// first, then in host order.
fn group(keys: &[Option<GroupKey>]) -> Vec<Vec<usize>> {
    let mut index: HashMap<&GroupKey, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(key) = key else { continue };
        let g = *index.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(status: &str, code: i32, out: &str) -> Option<GroupKey> {
        Some(GroupKey {
            status: status.into(),
            exit_code: Some(code),
            exit_signal: None,
            error: None,
            stdout: out.into(),
            stderr: String::new(),
        })
    }

    #[test]
    fn alike_hosts_collapse_and_running_ones_stay_out() {
        let keys = vec![
            key("ok", 0, "a"),
            key("failed", 1, "disk full"),
            None,
            key("ok", 0, "a"),
            key("ok", 0, "b"),
            key("ok", 0, "a"),
        ];
        assert_eq!(group(&keys), vec![vec![0, 3, 5], vec![1], vec![4]]);
        assert_eq!(tail(&b"x".repeat(5000)).len(), TAIL_BYTES);
    }
}
