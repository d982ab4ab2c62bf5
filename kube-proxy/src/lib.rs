//! rk-proxy: Services and EndpointSlices rendered into one nftables table, pod routes across
//! nodes, and cluster DNS. Not built yet: see issue 6.
