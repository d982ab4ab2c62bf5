//! rk-scheduler: places unscheduled Pods on Nodes (Filter and Score plugins over a snapshot,
//! binding through `pods/binding`, leader election on a Lease). Not built yet: see issue 4.
