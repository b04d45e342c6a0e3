//! Service supervision. (Stub: the supervisor helper owns this crate.)
