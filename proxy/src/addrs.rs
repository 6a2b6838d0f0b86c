//! Typed socket addresses used through the data path (defined with the
//! capture module, which produces them).
pub use crate::capture::addrs::{ClientAddr, OrigDstAddr, to_canonical};
