//! Transparent capture: the original destination of a redirected connection,
//! the iptables rules that redirect a pod's TCP traffic to the sidecar, and
//! the netfilter rules that enforce NetworkPolicy on non-TCP traffic.
