//! `palisade-proxy`: the sidecar binary.
fn main() -> anyhow::Result<()> {
    Ok(())
}
