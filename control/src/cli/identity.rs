//! `palisade ca`, `palisade cert` and `palisade id`: the identity subcommands.
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum CaCommand {}
#[derive(Debug, Subcommand)]
pub enum CertCommand {}
#[derive(Debug, Subcommand)]
pub enum IdCommand {}

pub fn run_ca(c: CaCommand) -> u8 {
    match c {}
}
pub fn run_cert(c: CertCommand) -> u8 {
    match c {}
}
pub fn run_id(c: IdCommand) -> u8 {
    match c {}
}
