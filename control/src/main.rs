//! `palisade`: the operator CLI.
fn main() -> anyhow::Result<()> {
    Ok(())
}
