//! `palisade`: the operator CLI. Parsing lives in `cli`; this file only maps the
//! outcome to an exit code.
use std::process::ExitCode;

fn main() -> ExitCode {
    palisade_control::cli::main()
}
