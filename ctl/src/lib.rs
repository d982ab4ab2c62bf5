//! rctl: the everyday command line (get, apply, describe, logs, …) on kube-rs, reading the same
//! kubeconfig files as kubectl. Not built yet: see issue 7.
