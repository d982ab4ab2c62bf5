//! Keeping a stopped etcd member out of the way.
//!
//! The etcd client balances requests over every member through tonic, whose balancer keeps an
//! endpoint whose connection is refused among the ready ones: each request sent there fails at
//! once. Worse, the balancer prefers the endpoint with fewer requests in flight, and a dead member
//! never holds any, so it wins every draw it takes part in. Two remedies, together:
//! - a prober asks each member on its own connection for its status every
//!   [`PROBE_INTERVAL`], takes the members that do not answer out of the balancer and puts them
//!   back when they answer again (all of them stay when none answers: requests then fail with
//!   etcd's own error, which is the truth);
//! - a request whose connection was refused never reached etcd, so it is sent again, even a
//!   write ([`resend`]), for about as long as the prober needs to notice.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// How often each member is asked for its status.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long a member may take to answer before it counts as gone.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between sends of a refused request: about a second in all, two probe intervals.
const RESEND_DELAYS_MS: [u64; 7] = [10, 20, 40, 80, 160, 300, 300];

/// The endpoints to add to and remove from the balancer, given every endpoint configured, those in
/// the balancer now and those that answered the last probe.
pub(super) fn plan(
    all: &[String],
    in_balancer: &BTreeSet<String>,
    answered: &BTreeSet<String>,
) -> (Vec<String>, Vec<String>) {
    let wanted: BTreeSet<String> = if answered.is_empty() { all.iter().cloned().collect() } else { answered.clone() };
    let add = wanted.difference(in_balancer).cloned().collect();
    let remove = in_balancer.difference(&wanted).cloned().collect();
    (add, remove)
}

/// Probes every member until `alive` can no longer be upgraded (the store is gone), keeping the
/// balancer of `client` to the members that answer.
pub(super) async fn keep_to_live_members(
    client: Client,
    endpoints: Vec<String>,
    options: ConnectOptions,
    alive: Weak<()>,
) {
    let mut probes = Vec::new();
    for endpoint in &endpoints {
        // Connecting is lazy: this succeeds whether or not the member is up.
        match Client::connect([endpoint.as_str()], Some(options.clone())).await {
            Ok(c) => probes.push((endpoint.clone(), c)),
            Err(error) => {
                tracing::warn!(%endpoint, %error, "cannot probe etcd member; it stays in the balancer");
                return;
            }
        }
    }
    let mut in_balancer: BTreeSet<String> = endpoints.iter().cloned().collect();
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.strong_count() == 0 {
            return;
        }
        let answers = futures::future::join_all(probes.iter().map(|(endpoint, c)| async move {
            let mut m = c.maintenance_client();
            let ok = tokio::time::timeout(PROBE_TIMEOUT, m.status()).await.is_ok_and(|r| r.is_ok());
            ok.then(|| endpoint.clone())
        }))
        .await;
        let answered: BTreeSet<String> = answers.into_iter().flatten().collect();
        let (add, remove) = plan(&endpoints, &in_balancer, &answered);
        for endpoint in add {
            tracing::info!(%endpoint, "etcd member answers again; back in the balancer");
            if client.add_endpoint(&endpoint).await.is_ok() {
                in_balancer.insert(endpoint);
            }
        }
        for endpoint in remove {
            tracing::warn!(%endpoint, "etcd member does not answer; out of the balancer");
            if client.remove_endpoint(&endpoint).await.is_ok() {
                in_balancer.remove(&endpoint);
            }
        }
    }
}

/// Whether the request failed because the connection to its member was refused, which means it
/// was never sent.
pub(super) fn refused(error: &etcd_client::Error) -> bool {
    let etcd_client::Error::GRpcStatus(status) = error else { return false };
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Runs `call` on a clone of `client`, and again while its connection is refused (see the
/// module's comment).
pub(super) async fn resend<C, T, F, Fut>(client: &C, mut call: F) -> Result<T, etcd_client::Error>
where
    C: Clone,
    F: FnMut(C) -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    for delay in RESEND_DELAYS_MS {
        match call(client.clone()).await {
            Err(e) if refused(&e) => tokio::time::sleep(Duration::from_millis(delay)).await,
            other => return other,
        }
    }
    call(client.clone()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plan_keeps_the_balancer_to_the_members_that_answer() {
        let all: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // in balancer, answered, add, remove
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (&["a", "b", "c"], &["a", "b", "c"], &[], &[]),
            (&["a", "b", "c"], &["b", "c"], &[], &["a"]),
            (&["b", "c"], &["a", "b", "c"], &["a"], &[]),
            (&["b", "c"], &["a", "b"], &["a"], &["c"]),
            // Nobody answers: every member goes back, so errors come from etcd itself.
            (&["b"], &[], &["a", "c"], &[]),
            (&["a", "b", "c"], &[], &[], &[]),
        ];
        for (in_balancer, answered, add, remove) in cases {
            let (a, r) = plan(&all, &set(in_balancer), &set(answered));
            assert_eq!(a, set(add).into_iter().collect::<Vec<_>>(), "{in_balancer:?} {answered:?}");
            assert_eq!(r, set(remove).into_iter().collect::<Vec<_>>(), "{in_balancer:?} {answered:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_recognised_and_sent_again() {
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
        let client = Client::connect([format!("http://127.0.0.1:{port}")], None).await.expect("lazy connect");
        let mut kv = client.kv_client();
        let error = kv.get("k", None).await.expect_err("nothing listens");
        assert!(refused(&error), "{error:?}");

        let mut calls = 0;
        let result: Result<(), _> = resend(&kv, |mut kv| {
            calls += 1;
            async move { kv.get("k", None).await.map(|_| ()) }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, RESEND_DELAYS_MS.len() + 1);

        let mut calls = 0;
        let other: Result<(), _> = resend(&(), |()| {
            calls += 1;
            async { Err(etcd_client::Error::Internal("no".into())) }
        })
        .await;
        assert!(other.is_err());
        assert_eq!(calls, 1, "other errors are not sent again");
    }
}
