//! Settings that affect merging (CONFIG_PROTECT, FEATURES, …).
