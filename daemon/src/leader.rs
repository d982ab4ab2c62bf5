//! Leader election on a `coordination.k8s.io/v1` Lease, upstream's way: the holder renews the
//! Lease every `retry_period`; a candidate takes it over once the record has not changed for
//! `lease_duration` as seen by the candidate's own clock (so clock skew between machines does not
//! matter); every write carries the resourceVersion it read, so two candidates can never both win.
//! A holder that cannot renew within `renew_deadline` gives up, before anyone else may take over.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Which Lease, who we are, and upstream's timings (15 s, 10 s, 2 s by default).
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Config {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Config {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the Lease it just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder stopped renewing: take it.
    TakeOver,
    /// It is ours: renew it.
    Renew,
    /// Someone else holds it and renews it.
    Wait,
}

/// The decision for a Lease whose record (holder, renew time) has not changed for
/// `unchanged_for` by our clock.
pub fn decide(spec: &LeaseSpec, me: &str, unchanged_for: Duration, default_duration: Duration) -> Decision {
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    let duration =
        spec.lease_duration_seconds.map_or(default_duration, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
    if holder == me {
        Decision::Renew
    } else if holder.is_empty() || unchanged_for >= duration {
        Decision::TakeOver
    } else {
        Decision::Wait
    }
}

/// Held leadership: `lost` is cancelled when the Lease could not be renewed in time or someone
/// else holds it; the process should then stop doing the leader's work.
pub struct Leadership {
    lost: CancellationToken,
    renewing: tokio::task::JoinHandle<()>,
    api: Api<Lease>,
    config: Config,
}

impl Leadership {
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and hands the Lease back (empty holder), so a standby takes over at once.
    pub async fn release(self) {
        self.renewing.abort();
        if self.lost.is_cancelled() {
            return;
        }
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                spec.renew_time = Some(MicroTime(Timestamp::now()));
                if let Err(e) = self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
                    tracing::debug!(error = %e, "releasing the lease failed");
                }
            }
        }
    }
}

impl Drop for Leadership {
    /// A dropped leadership (the daemon stopping, or its task aborted) stops renewing.
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

/// Waits until this candidate holds the Lease (`None` if `shutdown` comes first), then keeps
/// renewing it in the background.
pub async fn acquire(
    client: kube::Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<Option<Leadership>, Error> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed = Observed::default();
    loop {
        match try_hold(&api, &config, &mut observed).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(lease = %config.name, error = %e, "reading the lease failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.retry_period) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
    tracing::info!(lease = %config.name, identity = %config.identity, "became the leader");
    let lost = CancellationToken::new();
    let renewing = tokio::spawn(renew(api.clone(), config.clone(), observed, lost.clone()));
    Ok(Some(Leadership { lost, renewing, api, config }))
}

async fn renew(api: Api<Lease>, config: Config, mut observed: Observed, lost: CancellationToken) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(config.retry_period).await;
        let attempt = tokio::time::timeout(config.renew_deadline, try_hold(&api, &config, &mut observed)).await;
        match attempt {
            Ok(Ok(true)) => renewed = Instant::now(),
            Ok(Ok(false)) => {
                tracing::warn!(lease = %config.name, "another candidate holds the lease; no longer the leader");
                break;
            }
            Ok(Err(e)) => tracing::warn!(lease = %config.name, error = %e, "renewing the lease failed"),
            Err(_) => tracing::warn!(lease = %config.name, "renewing the lease timed out"),
        }
        if renewed.elapsed() >= config.renew_deadline {
            tracing::warn!(lease = %config.name, "the lease was not renewed within the deadline; no longer the leader");
            break;
        }
    }
    lost.cancel();
}

/// The Lease record last seen and when it last changed, by our clock.
#[derive(Default)]
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    since: Option<Instant>,
}

/// Reads the Lease and creates, renews or takes it over if the [`decide`] says so; `Ok(true)`
/// when we hold it afterwards.
async fn try_hold(api: &Api<Lease>, config: &Config, observed: &mut Observed) -> Result<bool, Error> {
    let now = MicroTime(Timestamp::now());
    let duration_seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(config.name.clone()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let record = (spec.holder_identity.clone(), spec.renew_time.clone());
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.since = Some(Instant::now());
    }
    let unchanged_for = observed.since.map_or(Duration::ZERO, |t| t.elapsed());
    match decide(spec, &config.identity, unchanged_for, config.lease_duration) {
        Decision::Wait => return Ok(false),
        Decision::Renew => {}
        Decision::TakeOver => {
            spec.holder_identity = Some(config.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
    }
    spec.lease_duration_seconds = Some(duration_seconds);
    spec.renew_time = Some(now);
    // The resourceVersion read goes back with the write: a concurrent writer gets a 409.
    match api.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(written) => {
            let spec = written.spec.unwrap_or_default();
            observed.record = Some((spec.holder_identity, spec.renew_time));
            observed.since = Some(Instant::now());
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec { holder_identity: holder.map(str::to_string), lease_duration_seconds: seconds, ..Default::default() }
    }

    #[test]
    fn candidates_take_over_only_free_or_stale_leases() {
        let d = Duration::from_secs(15);
        let s = Duration::from_secs;
        let cases = [
            (lease(None, Some(15)), s(0), Decision::TakeOver),
            (lease(Some(""), Some(15)), s(0), Decision::TakeOver),
            (lease(Some("me"), Some(15)), s(100), Decision::Renew),
            (lease(Some("other"), Some(15)), s(14), Decision::Wait),
            (lease(Some("other"), Some(15)), s(15), Decision::TakeOver),
            (lease(Some("other"), Some(40)), s(20), Decision::Wait),
            (lease(Some("other"), None), s(16), Decision::TakeOver),
        ];
        for (spec, unchanged, want) in cases {
            assert_eq!(decide(&spec, "me", unchanged, d), want, "{spec:?} unchanged for {unchanged:?}");
        }
    }
}
