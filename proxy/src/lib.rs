//! The Palisade sidecar.
