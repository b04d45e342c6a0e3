//! Cluster membership and the rules it obeys, without I/O.
