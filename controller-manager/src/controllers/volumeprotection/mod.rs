//! Storage object in use protection (upstream's `pvc-protection` and `pv-protection`
//! controllers). rk-apiserver gives every new claim the `kubernetes.io/pvc-protection` finalizer
//! and every new volume `kubernetes.io/pv-protection`; a deleted one then only gets a
//! deletionTimestamp. [`claims`] removes a claim's finalizer once no scheduled, unfinished pod of
//! its namespace uses it (asking the API server, not only the cache, before it does); [`volumes`]
//! removes a volume's once it is no longer Bound, which the binder sees to once its claim is gone.
//! Both add the finalizer to objects made without it. The decisions are in [`plan`].

pub mod claims;
pub mod plan;
pub mod volumes;

/// Whether a write failed because the object is gone (nothing left to protect).
fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
