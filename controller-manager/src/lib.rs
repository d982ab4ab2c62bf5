//! rk-controller-manager: the controllers that turn intent into Pods (ReplicaSet, Deployment,
//! StatefulSet, DaemonSet, Job, CronJob, EndpointSlice, namespace, garbage collector, node
//! lifecycle and the rest), one module each over shared reflectors. Not built yet: see issue 5.
