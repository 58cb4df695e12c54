//! The release lock: one `coordination.k8s.io/v1` Lease per application and environment, so
//! two releases never run at once, and a crashed Ferry never leaves a lock only a human can
//! clear.
//!
//! [`acquire`] creates the Lease `ferry-lock-<app>-<env>`. If it exists and its holder is
//! alive (`renewTime + leaseDurationSeconds` in the future), Ferry refuses at once naming the
//! holder, or, with [`LockOptions::wait`], watches the Lease until it is released or expires.
//! An expired Lease is taken over with a `replace` carrying the resourceVersion that was read,
//! so of two processes racing for it exactly one wins (the other gets a conflict and looks
//! again); the winner learns whom it took over from ([`LockGuard::took_over`]), which is the
//! cue to look for a pending release record. While held, a background task renews the Lease
//! every third of its duration; [`LockGuard::release`] deletes it, guarded by its
//! resourceVersion so a lock that was lost is never deleted from under its new holder.
//! Dropping the guard without releasing stops the renewals: the Lease then expires by itself.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams, Preconditions};
use kube::runtime::wait::await_condition;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::ApiCause;
use crate::cluster::error::missing_namespace_hint;
use crate::ui::{Diagnostic, ExitStatus};

/// The default lease duration: a killed Ferry's lock is free again after this long.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(30);

/// The Lease's name for `app` in `env`.
pub fn lease_name(app: &str, env: &str) -> String {
    format!("ferry-lock-{app}-{env}")
}

/// Who this process is, as a Lease holder: `user@host pid N`.
pub fn default_holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!(
        "{}@{host} pid {}",
        super::record::current_user(),
        std::process::id()
    )
}

/// What to lock and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOptions {
    /// The environment's namespace, where the Lease lives.
    pub namespace: String,
    /// The application.
    pub app: String,
    /// The environment.
    pub env: String,
    /// This process's identity ([`default_holder`]).
    pub holder: String,
    /// How long the lock outlives its last renewal (whole seconds, at least 1).
    pub duration: Duration,
    /// `None`: refuse at once when the lock is held. `Some(t)`: wait up to `t` for it.
    pub wait: Option<Duration>,
}

/// A Lease as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LeaseState {
    /// Nobody holds it (no holder identity).
    Free,
    /// Held and renewed recently enough.
    Held {
        /// The holder's identity.
        holder: String,
        /// When it expires unless renewed.
        expires_at: Timestamp,
    },
    /// Held by someone who stopped renewing it.
    Expired {
        /// The former holder's identity.
        holder: String,
        /// When it expired.
        expired_at: Timestamp,
    },
}

/// Decides whether `lease` is free, held or expired at `now`: expired when
/// `renewTime` (else `acquireTime`) plus `leaseDurationSeconds` is not after `now`. A holder
/// without any time is taken as expired.
pub fn lease_state(lease: &Lease, now: Timestamp) -> LeaseState {
    let Some(spec) = &lease.spec else {
        return LeaseState::Free;
    };
    let Some(holder) = spec.holder_identity.clone().filter(|h| !h.is_empty()) else {
        return LeaseState::Free;
    };
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return LeaseState::Expired {
            holder,
            expired_at: now,
        };
    };
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    let expires_at = renewed
        .0
        .checked_add(SignedDuration::from_secs(seconds))
        .unwrap_or(renewed.0);
    if expires_at > now {
        LeaseState::Held { holder, expires_at }
    } else {
        LeaseState::Expired {
            holder,
            expired_at: expires_at,
        }
    }
}

/// A lock taken over from a holder that stopped renewing it (probably killed mid-release).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakenOver {
    /// The former holder's identity.
    pub holder: String,
    /// When its lease expired.
    pub expired_at: Timestamp,
}

/// Why the lock could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds the lock and it has not expired.
    #[error("another release of {app} to {env} is in progress, held by {holder}")]
    Held {
        /// The application.
        app: String,
        /// The environment.
        env: String,
        /// The holder's identity.
        holder: String,
        /// When the lock expires unless renewed.
        expires_at: Timestamp,
    },
    /// The lock stayed held for the whole wait.
    #[error("the release lock of {app} in {env} is still held by {holder} after waiting {}", humantime::format_duration(*.waited))]
    WaitTimedOut {
        /// The application.
        app: String,
        /// The environment.
        env: String,
        /// The holder's identity.
        holder: String,
        /// How long Ferry waited.
        waited: Duration,
    },
    /// The lock was taken by someone else while this process believed it held it (renewals
    /// failed for longer than the lease duration).
    #[error("lost the release lock of {app} in {env}")]
    Lost {
        /// The application.
        app: String,
        /// The environment.
        env: String,
    },
    /// The API server refused or failed a request on the Lease.
    #[error("failed to {verb} lease {namespace}/{name}")]
    Api {
        /// `create`, `get`, `replace`, `watch` or `delete`.
        verb: &'static str,
        /// The environment.
        env: String,
        /// The namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// What the API server or the connection said.
        #[source]
        source: Box<ApiCause>,
    },
}

impl Diagnostic for LockError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            LockError::Lost { .. } => ExitStatus::Partial,
            // The Lease is the first write of a release: nothing was changed.
            LockError::Api { source, .. } if source.missing_namespace().is_some() => {
                ExitStatus::BadInput
            }
            _ => ExitStatus::Failure,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            LockError::Held { expires_at, .. } => vec![
                "wait for it with `--wait-lock`".to_string(),
                format!(
                    "if that process is gone, its lock expires at {expires_at} and the next release recovers"
                ),
            ],
            LockError::Api { source, env, .. } => {
                if let Some(namespace) = source.missing_namespace() {
                    vec![missing_namespace_hint(namespace, env)]
                } else if source.is_forbidden() {
                    vec![
                        "ferry needs get, create, update, watch and delete on leases.coordination.k8s.io"
                            .to_string(),
                    ]
                } else {
                    Vec::new()
                }
            }
            LockError::Lost { env, .. } => vec![
                "another process took the lock while this release ran (or renewals failed until it expired): ferry stopped at once and restored nothing".to_string(),
                format!("`ferry status {env}` shows what is live now; `ferry history {env}` what each release did"),
            ],
            _ => Vec::new(),
        }
    }
}

/// What the renewal task and the guard share.
#[derive(Debug)]
struct Held {
    /// The Lease as last written by this process.
    lease: Lease,
    /// Set when a renewal found the Lease taken by someone else, or when renewals failed until
    /// the Lease expired (someone else may take it from then on).
    lost: bool,
}

/// The held lock. Renewed in the background until [`LockGuard::release`] or drop.
pub struct LockGuard {
    api: Api<Lease>,
    options: LockOptions,
    name: String,
    shared: Arc<Mutex<Held>>,
    stop: watch::Sender<bool>,
    /// Becomes true when the lock is lost (see [`Held::lost`]).
    lost: watch::Receiver<bool>,
    renewals: Option<JoinHandle<()>>,
    took_over: Option<TakenOver>,
    uncontended: bool,
}

impl LockGuard {
    /// True when no Lease existed at the call and this one was created at the first attempt:
    /// nobody held the lock from before the call until now, except a holder that took it and
    /// let it go in between (the caller detects that one by the revision it wrote).
    pub fn uncontended(&self) -> bool {
        self.uncontended
    }

    /// The former holder when the lock was taken over after it expired.
    pub fn took_over(&self) -> Option<&TakenOver> {
        self.took_over.as_ref()
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fails when a renewal found the lock taken by someone else: stop changing the cluster.
    ///
    /// # Errors
    /// [`LockError::Lost`].
    pub fn check(&self) -> Result<(), LockError> {
        let held = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if held.lost {
            return Err(LockError::Lost {
                app: self.options.app.clone(),
                env: self.options.env.clone(),
            });
        }
        Ok(())
    }

    /// Resolves with [`LockError::Lost`] as soon as the renewals find the lock lost: select
    /// it against every step that changes the cluster, so a release stops at once. Pending
    /// forever while the lock is held, and after [`LockGuard::release`] began.
    pub async fn lost(&self) -> LockError {
        let mut lost = self.lost.clone();
        if lost.wait_for(|l| *l).await.is_err() {
            // The renewal task ended without losing the lock (stopped): it cannot be lost now.
            std::future::pending::<()>().await;
        }
        LockError::Lost {
            app: self.options.app.clone(),
            env: self.options.env.clone(),
        }
    }

    /// Stops renewing and deletes the Lease (only if it is still the one this process wrote).
    ///
    /// # Errors
    /// [`LockError::Lost`] when someone else holds it now, [`LockError::Api`] when the delete
    /// fails (the Lease then expires by itself).
    pub async fn release(mut self) -> Result<(), LockError> {
        let _ = self.stop.send(true);
        if let Some(task) = self.renewals.take() {
            let _ = task.await;
        }
        self.check()?;
        let (uid, rv) = {
            let held = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            (
                held.lease.metadata.uid.clone(),
                held.lease.metadata.resource_version.clone(),
            )
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: rv,
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(&self.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(kube::Error::Api(s)) if s.is_conflict() => Err(LockError::Lost {
                app: self.options.app.clone(),
                env: self.options.env.clone(),
            }),
            Err(e) => Err(api_error("delete", &self.options, &self.name, e)),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = &self.renewals {
            task.abort();
        }
    }
}

fn api_error(verb: &'static str, options: &LockOptions, name: &str, e: kube::Error) -> LockError {
    LockError::Api {
        verb,
        env: options.env.clone(),
        namespace: options.namespace.clone(),
        name: name.to_string(),
        source: Box::new(ApiCause::from_kube(&e)),
    }
}

fn duration_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// Takes the lock, taking over an expired one.
///
/// # Errors
/// [`LockError::Held`] (no wait) or [`LockError::WaitTimedOut`] when someone else holds it;
/// [`LockError::Api`] when a request fails.
pub async fn acquire(client: &Client, options: &LockOptions) -> Result<LockGuard, LockError> {
    let ns = options.namespace.as_str();
    let name = lease_name(&options.app, &options.env);
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    let mut first_attempt = true;
    loop {
        let uncontended = std::mem::replace(&mut first_attempt, false);
        let now = Timestamp::now();
        let fresh = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(
                    [
                        (
                            "app.kubernetes.io/managed-by".to_string(),
                            "ferry".to_string(),
                        ),
                        ("ferry.dev/app".to_string(), options.app.clone()),
                        ("ferry.dev/env".to_string(), options.env.clone()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(options.holder.clone()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_duration_seconds: Some(duration_seconds(options.duration)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match api.create(&PostParams::default(), &fresh).await {
            Ok(lease) => {
                let mut guard = start_guard(api, options, name, lease, None);
                guard.uncontended = uncontended;
                return Ok(guard);
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(api_error("create", options, &name, e)),
        }
        let Some(current) = api
            .get_opt(&name)
            .await
            .map_err(|e| api_error("get", options, &name, e))?
        else {
            continue; // released between our create and get: try again
        };
        let previous = match lease_state(&current, Timestamp::now()) {
            LeaseState::Free => None,
            LeaseState::Expired { holder, expired_at } => Some(TakenOver { holder, expired_at }),
            LeaseState::Held { holder, expires_at } => {
                let Some(wait) = options.wait else {
                    return Err(LockError::Held {
                        app: options.app.clone(),
                        env: options.env.clone(),
                        holder,
                        expires_at,
                    });
                };
                let left = wait.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(LockError::WaitTimedOut {
                        app: options.app.clone(),
                        env: options.env.clone(),
                        holder,
                        waited: started.elapsed(),
                    });
                }
                let until_expiry = Duration::from_millis(
                    u64::try_from(
                        expires_at
                            .as_millisecond()
                            .saturating_sub(Timestamp::now().as_millisecond()),
                    )
                    .unwrap_or(0),
                ) + Duration::from_millis(100);
                let rv = current.metadata.resource_version.clone();
                let changed =
                    move |l: Option<&Lease>| l.is_none_or(|l| l.metadata.resource_version != rv);
                // Wake up when the Lease changes (renewed, released, taken) or may have expired.
                match tokio::time::timeout(
                    left.min(until_expiry),
                    await_condition(api.clone(), &name, changed),
                )
                .await
                {
                    Ok(Ok(_)) | Err(_) => continue,
                    Ok(Err(kube::runtime::wait::Error::ProbeFailed(e))) => {
                        let error = ApiCause::from_watcher(&e);
                        tracing::debug!(lease = %name, %error, "lease watch failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        };
        let mut next = current.clone();
        let now = Timestamp::now();
        let transitions = current
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        next.spec = Some(LeaseSpec {
            holder_identity: Some(options.holder.clone()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(duration_seconds(options.duration)),
            lease_transitions: Some(transitions.saturating_add(1)),
            ..LeaseSpec::default()
        });
        match api.replace(&name, &PostParams::default(), &next).await {
            Ok(lease) => return Ok(start_guard(api, options, name, lease, previous)),
            // Someone else took it first: look again (and refuse or wait for them).
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => continue,
            Err(e) => return Err(api_error("replace", options, &name, e)),
        }
    }
}

fn start_guard(
    api: Api<Lease>,
    options: &LockOptions,
    name: String,
    lease: Lease,
    took_over: Option<TakenOver>,
) -> LockGuard {
    let shared = Arc::new(Mutex::new(Held { lease, lost: false }));
    let (stop, stop_rx) = watch::channel(false);
    let (lost_tx, lost) = watch::channel(false);
    let renewals = tokio::spawn(renew(
        api.clone(),
        name.clone(),
        options.duration,
        Arc::clone(&shared),
        stop_rx,
        lost_tx,
    ));
    LockGuard {
        api,
        options: options.clone(),
        name,
        shared,
        stop,
        lost,
        renewals: Some(renewals),
        took_over,
        uncontended: false,
    }
}

/// Renews the Lease every third of its duration until stopped or lost. The lock is lost when
/// a renewal finds the Lease taken by someone else, or when no renewal succeeded before the
/// Lease expired (counted from the last successful renewal's start, on this process's clock).
async fn renew(
    api: Api<Lease>,
    name: String,
    duration: Duration,
    shared: Arc<Mutex<Held>>,
    mut stop: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
) {
    let every = (duration / 3).max(Duration::from_millis(300));
    let mut expires = tokio::time::Instant::now() + duration;
    let lose = |why: &str| {
        tracing::warn!(lease = %name, "{why}");
        let mut held = shared.lock().unwrap_or_else(PoisonError::into_inner);
        held.lost = true;
        drop(held);
        let _ = lost.send(true);
    };
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(every) => {}
        }
        let mut next = {
            let held = shared.lock().unwrap_or_else(PoisonError::into_inner);
            held.lease.clone()
        };
        if let Some(spec) = next.spec.as_mut() {
            spec.renew_time = Some(MicroTime(Timestamp::now()));
        }
        let sent = tokio::time::Instant::now();
        let params = PostParams::default();
        let replaced = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep_until(expires) => {
                lose("the release lock expired: its renewals kept failing");
                return;
            }
            r = api.replace(&name, &params, &next) => r,
        };
        match replaced {
            Ok(lease) => {
                let mut held = shared.lock().unwrap_or_else(PoisonError::into_inner);
                held.lease = lease;
                expires = sent + duration;
            }
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {
                lose("the release lock was taken by someone else");
                return;
            }
            // Transient: try again at the next tick, unless the Lease has expired by then.
            Err(e) => {
                let error = ApiCause::from_kube(&e);
                tracing::debug!(lease = %name, %error, "lease renewal failed");
                if tokio::time::Instant::now() + every >= expires {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return,
                        () = tokio::time::sleep_until(expires) => {}
                    }
                    lose("the release lock expired: its renewals kept failing");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10: a release into a missing namespace printed kube's Debug dump of the Status
    /// and exited 1; it reads like `apply` and exits 2 (the Lease is the first write).
    #[test]
    fn a_missing_namespace_reads_like_apply_and_exits_2() {
        let status =
            kube::core::Status::failure("namespaces \"gone\" not found", "NotFound").with_code(404);
        let options = LockOptions {
            namespace: "gone".into(),
            app: "demo".into(),
            env: "staging".into(),
            holder: "test".into(),
            duration: DEFAULT_LEASE_DURATION,
            wait: None,
        };
        let error = api_error(
            "create",
            &options,
            "ferry-lock-demo-staging",
            kube::Error::Api(Box::new(status)),
        );
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(
            cause.as_deref(),
            Some("namespaces \"gone\" not found (404 NotFound)")
        );
        assert_eq!(error.exit_status(), ExitStatus::BadInput);
        assert_eq!(
            error.hints(),
            ["the namespace `gone` does not exist: create it with `ferry provision staging`"]
        );
    }

    fn lease(holder: Option<&str>, renewed: Option<Timestamp>, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: renewed.map(MicroTime),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn lease_states() {
        let now = Timestamp::now();
        let ago = |s: i64| now.checked_sub(SignedDuration::from_secs(s)).unwrap();
        assert_eq!(
            lease_state(&lease(None, Some(now), 30), now),
            LeaseState::Free
        );
        assert_eq!(
            lease_state(&lease(Some(""), Some(now), 30), now),
            LeaseState::Free
        );
        assert!(matches!(
            lease_state(&lease(Some("a"), Some(ago(10)), 30), now),
            LeaseState::Held { ref holder, .. } if holder == "a"
        ));
        assert_eq!(
            lease_state(&lease(Some("a"), Some(ago(40)), 30), now),
            LeaseState::Expired {
                holder: "a".into(),
                expired_at: ago(10)
            }
        );
        assert!(matches!(
            lease_state(&lease(Some("a"), None, 30), now),
            LeaseState::Expired { .. }
        ));
    }

    #[test]
    fn names_and_holders() {
        assert_eq!(lease_name("shop", "staging"), "ferry-lock-shop-staging");
        assert!(default_holder().contains(&format!("pid {}", std::process::id())));
    }
}
