//! `palisade compile`, `palisade check` and `palisade lint`: the policy subcommands.
use clap::Args;

#[derive(Debug, Args)]
pub struct CompileArgs {}
#[derive(Debug, Args)]
pub struct CheckArgs {}
#[derive(Debug, Args)]
pub struct LintArgs {}

pub fn run_compile(_a: CompileArgs) -> u8 {
    eprintln!("palisade compile: not implemented yet");
    2
}
pub fn run_check(_a: CheckArgs) -> u8 {
    eprintln!("palisade check: not implemented yet");
    2
}
pub fn run_lint(_a: LintArgs) -> u8 {
    eprintln!("palisade lint: not implemented yet");
    2
}
