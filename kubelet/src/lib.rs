//! rk-kubelet: the node agent. Registers its Node, keeps a Lease heartbeat and makes the Docker
//! Engine match the Pods bound to it. Not built yet: see issue 3.
