//! `palisade ca`, `palisade cert` and `palisade id`: the identity subcommands.
//!
//! Exit codes: 0 success; 1 a certificate or ID that fails a SPIFFE rule (one
//! line on stderr naming the rule); 2 bad arguments or unreadable files.
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use palisade_identity::bundle::is_spiffe_bundle;
use palisade_identity::credentials::{
    SVID_BUNDLE_FILE, SVID_CERT_FILE, SVID_KEY_FILE, write_svid_dir,
};
use palisade_identity::federation::read_bundle_file;
use palisade_identity::verify::verify_svid_chain_federated_now;
use palisade_identity::{
    CaOptions, CertificateAuthority, FederatedBundles, SpiffeId, TrustBundle, TrustDomain,
};

const OK: u8 = 0;
const REJECTED: u8 = 1;
const BAD_INPUT: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a new CA (ECDSA P-256 root, optionally an intermediate).
    Init {
        /// Trust domain, e.g. `cluster.local`.
        #[arg(long)]
        trust_domain: String,
        /// Directory to write ca.pem, ca.key (0600) and bundle.pem into.
        #[arg(long)]
        out: PathBuf,
        /// Sign SVIDs with an intermediate; the root goes to root.pem/root.key.
        #[arg(long)]
        intermediate: bool,
        /// Replace an existing CA in --out.
        #[arg(long)]
        force: bool,
    },
    /// Rotate the CA a running control plane uses, without downtime:
    /// prepare, then activate, then finish.
    Rotate {
        #[command(subcommand)]
        step: super::ca_rotate::RotateStep,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue an X509-SVID: writes svid.pem (leaf then intermediates), svid.key
    /// (0600, unless --csr) and bundle.pem.
    Issue {
        /// CA directory (ca.pem/ca.key/bundle.pem, or a cert-manager secret's
        /// tls.crt/tls.key/ca.crt).
        #[arg(long)]
        ca: PathBuf,
        /// The SPIFFE ID to certify.
        #[arg(long)]
        id: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime, e.g. `24h`, `90m`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
        ttl: Duration,
        /// Certify the key of this PKCS#10 CSR (PEM) instead of generating one.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Trust domain of a CA whose certificates carry no spiffe:// SAN.
        #[arg(long)]
        trust_domain: Option<String>,
    },
    /// Verify an X509-SVID chain against a trust bundle; prints the SPIFFE ID.
    Verify {
        /// The bundle's root certificates: PEM, or a SPIFFE bundle (JWK Set).
        #[arg(long)]
        bundle: PathBuf,
        /// PEM file with the leaf followed by any intermediates.
        #[arg(long)]
        cert: PathBuf,
        /// Trust domain of the bundle (default: from the roots' spiffe:// SAN).
        #[arg(long)]
        trust_domain: Option<String>,
        /// The bundle of a federated trust domain, in a file named after it:
        /// `<trust-domain>.json` (SPIFFE bundle) or `<trust-domain>.pem`, as
        /// in an SVID directory's `federated/` folder. Repeatable. A chain
        /// verifies only to the bundle of its SPIFFE ID's trust domain.
        #[arg(long = "federated", value_name = "FILE")]
        federated: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Validate a SPIFFE ID; prints it when valid.
    Parse {
        /// The SPIFFE ID, e.g. `spiffe://cluster.local/ns/default/sa/web`.
        id: String,
    },
}

pub fn run_ca(c: CaCommand) -> u8 {
    match c {
        CaCommand::Init {
            trust_domain,
            out,
            intermediate,
            force,
        } => ca_init(&trust_domain, &out, intermediate, force),
        CaCommand::Rotate { step } => super::ca_rotate::run(step),
    }
}

pub fn run_cert(c: CertCommand) -> u8 {
    match c {
        CertCommand::Issue {
            ca,
            id,
            out,
            ttl,
            csr,
            trust_domain,
        } => cert_issue(&ca, &id, &out, ttl, csr.as_deref(), trust_domain.as_deref()),
        CertCommand::Verify {
            bundle,
            cert,
            trust_domain,
            federated,
        } => cert_verify(&bundle, &cert, trust_domain.as_deref(), &federated),
    }
}

pub fn run_id(c: IdCommand) -> u8 {
    match c {
        IdCommand::Parse { id } => match SpiffeId::parse(&id) {
            Ok(id) => {
                println!("{id}");
                OK
            }
            Err(e) => fail(REJECTED, format_args!("invalid SPIFFE ID: {e}")),
        },
    }
}

fn ca_init(trust_domain: &str, out: &Path, intermediate: bool, force: bool) -> u8 {
    let td = match TrustDomain::new(trust_domain) {
        Ok(td) => td,
        Err(e) => return fail(BAD_INPUT, format_args!("--trust-domain: {e}")),
    };
    if !force && out.join(palisade_identity::ca::CA_KEY_FILE).exists() {
        return fail(
            BAD_INPUT,
            format_args!(
                "{} already holds a CA; pass --force to replace it",
                out.display()
            ),
        );
    }
    let opts = CaOptions {
        intermediate,
        ..CaOptions::default()
    };
    let ca = match CertificateAuthority::create(&td, &opts) {
        Ok(ca) => ca,
        Err(e) => return fail(BAD_INPUT, format_args!("creating the CA: {e}")),
    };
    if let Err(e) = ca.write_dir(out) {
        return fail(BAD_INPUT, format_args!("{e}"));
    }
    println!("{}", td.id());
    OK
}

fn cert_issue(
    ca_dir: &Path,
    id: &str,
    out: &Path,
    ttl: Duration,
    csr: Option<&Path>,
    trust_domain: Option<&str>,
) -> u8 {
    let id = match SpiffeId::parse(id) {
        Ok(id) => id,
        Err(e) => return fail(BAD_INPUT, format_args!("--id: {e}")),
    };
    let td = match trust_domain.map(TrustDomain::new).transpose() {
        Ok(td) => td,
        Err(e) => return fail(BAD_INPUT, format_args!("--trust-domain: {e}")),
    };
    let ca = match CertificateAuthority::load_dir(ca_dir, td) {
        Ok(ca) => ca,
        Err(e) => {
            return fail(
                BAD_INPUT,
                format_args!("loading CA {}: {e}", ca_dir.display()),
            );
        }
    };
    let issued = match csr {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(pem) => ca.issue_from_csr(&pem, &id, ttl),
            Err(e) => return fail(BAD_INPUT, format_args!("{}: {e}", path.display())),
        },
        None => ca.issue(&id, ttl),
    };
    let svid = match issued {
        Ok(svid) => svid,
        Err(e) => return fail(BAD_INPUT, format_args!("issuing {id}: {e}")),
    };
    if let Err(e) = write_svid_dir(out, &svid.chain, svid.key.as_ref(), ca.bundle()) {
        return fail(BAD_INPUT, format_args!("writing {}: {e}", out.display()));
    }
    tracing::info!(
        %id,
        cert = SVID_CERT_FILE,
        key = SVID_KEY_FILE,
        bundle = SVID_BUNDLE_FILE,
        "SVID written"
    );
    println!("{id}");
    OK
}

fn cert_verify(
    bundle_path: &Path,
    cert_path: &Path,
    trust_domain: Option<&str>,
    federated_paths: &[PathBuf],
) -> u8 {
    let bundle_pem = match std::fs::read_to_string(bundle_path) {
        Ok(t) => t,
        Err(e) => return fail(BAD_INPUT, format_args!("{}: {e}", bundle_path.display())),
    };
    let cert_pem = match std::fs::read_to_string(cert_path) {
        Ok(t) => t,
        Err(e) => return fail(BAD_INPUT, format_args!("{}: {e}", cert_path.display())),
    };
    // PEM roots, or a SPIFFE bundle (JWK Set) document, which does not name
    // its trust domain either. A document without x509-svid entries vouches
    // for no X509-SVID of the trust domain (its keys are revoked): the chain
    // is refused, as go-spiffe refuses it with a bundle without authorities.
    let spiffe = is_spiffe_bundle(&bundle_pem);
    let bundle = match trust_domain {
        Some(td) => match TrustDomain::new(td) {
            Ok(td) if spiffe => TrustBundle::from_spiffe_bundle_or_none(td, &bundle_pem),
            Ok(td) => TrustBundle::from_pem(td, &bundle_pem),
            Err(e) => return fail(BAD_INPUT, format_args!("--trust-domain: {e}")),
        },
        None if spiffe => TrustBundle::from_spiffe_bundle_infer(&bundle_pem),
        None => TrustBundle::from_pem_infer(&bundle_pem),
    };
    let bundle = match bundle {
        Ok(b) => b,
        Err(e) => return fail(BAD_INPUT, format_args!("{}: {e}", bundle_path.display())),
    };
    let mut federated = FederatedBundles::none();
    for path in federated_paths {
        let added = read_bundle_file(path).and_then(|b| federated.insert(b));
        if let Err(e) = added {
            return fail(BAD_INPUT, format_args!("--federated: {e}"));
        }
    }
    if let Err(e) = federated.check_against(&bundle) {
        return fail(BAD_INPUT, format_args!("--federated: {e}"));
    }
    let chain = match palisade_identity::pem::certs(&cert_pem) {
        Ok(c) => c,
        Err(e) => return fail(BAD_INPUT, format_args!("{}: {e}", cert_path.display())),
    };
    match verify_svid_chain_federated_now(&bundle, &federated, &chain) {
        Ok(id) => {
            println!("{id}");
            OK
        }
        Err(e) => fail(REJECTED, format_args!("rejected: {e}")),
    }
}

/// Prints one line on stderr and returns the exit code.
fn fail(code: u8, msg: std::fmt::Arguments<'_>) -> u8 {
    eprintln!("error: {msg}");
    code
}
