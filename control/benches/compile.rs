//! Criterion bench: compile a synthetic cluster (placeholder, filled in below).
fn main() {}
