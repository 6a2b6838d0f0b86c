//! Push fan-out bench (placeholder until the full bench lands).
fn main() {}
