//! The inter-node protocol: join, configuration distribution, discovery.
