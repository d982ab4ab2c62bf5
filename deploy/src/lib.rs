//! Deployment tooling lives beside this crate as scripts: `setup-host` installs the host
//! prerequisites, `rkadm` brings a cluster up (`init`) and takes it down (`reset`). The systemd
//! units and the kubeadm-style join come with issue 8; Rust code for them will live here.
