//! The ipBlock CIDR fields (`cidr`, `except`), read as the API server reads
//! these "legacy" CIDR fields: IsValidCIDRForLegacyField with strict
//! validation (KEP-4858's StrictIPCIDRValidation), and, for what the strict
//! check refuses, the network ParseCIDRSloppy still reads from the text,
//! which ValidateIPBlock goes on comparing the excepts with.
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::IpNet;

use super::FieldError;

/// A CIDR value the strict check refuses.
#[derive(Debug)]
pub(super) struct CidrError {
    pub error: FieldError,
    /// The network ParseCIDRSloppy reads (leading 0s ignored, bits beyond
    /// the prefix cleared); `None` when it reads none either.
    pub sloppy: Option<IpNet>,
}

/// An address and a prefix length, no leading 0s in either, no
/// IPv4-mapped IPv6 address, and no bits set beyond the prefix length
/// (`192.168.1.5/24` is ambiguous: `192.168.1.0/24` or `192.168.1.5/32`?).
/// IPv6 need not be canonical text.
pub(super) fn parse_legacy_cidr(field: &str, s: &str) -> Result<IpNet, CidrError> {
    let fail = |why: &str, sloppy: Option<IpNet>| CidrError {
        error: FieldError::new(
            field,
            format!("{s:?} {why} (a CIDR such as 10.9.8.0/24 or 2001:db8::/64)"),
        ),
        sloppy,
    };
    if s.is_empty() {
        return Err(CidrError {
            error: FieldError::new(field, "required"),
            sloppy: None,
        });
    }
    let Some(sloppy) = parse_sloppy(s) else {
        return Err(fail("is not a valid CIDR value", None));
    };
    let Some((addr, len)) = s.split_once('/') else {
        return Err(fail("is not a valid CIDR value", None));
    };
    let leading_zero = |part: &str| part.len() > 1 && part.starts_with('0');
    let strict_ip = IpAddr::from_str(addr).ok();
    if leading_zero(len) || strict_ip.is_none() {
        // The sloppy parse read it, so only leading 0s stand in the way.
        return Err(fail(
            "must not have leading 0s in IP or prefix length",
            Some(sloppy),
        ));
    }
    if let Some(IpAddr::V6(v6)) = strict_ip
        && v6.to_ipv4_mapped().is_some()
    {
        // ParseCIDRSloppy reads it as an IPv6 network whose Contains is
        // IPv4-aware; rather than mimic that, compare nothing with it.
        return Err(fail("must not have an IPv4-mapped IPv6 address", None));
    }
    let Some(net) = strict_ip.and_then(|ip| len.parse().ok().and_then(|n| IpNet::new(ip, n).ok()))
    else {
        return Err(fail("is not a valid CIDR value", None));
    };
    if net.trunc() != net {
        return Err(fail(
            &format!(
                "must not have bits set beyond the prefix length (did you mean {} or {}/{}?)",
                net.trunc(),
                net.addr(),
                net.max_prefix_len()
            ),
            Some(sloppy),
        ));
    }
    Ok(net)
}

/// ParseCIDRSloppy (k8s.io/utils/net, Go's pre-1.17 parser): IPv4 octets
/// and the prefix length may carry leading 0s; the network is the address
/// with the bits beyond the prefix cleared.
fn parse_sloppy(s: &str) -> Option<IpNet> {
    let (addr, len) = s.split_once('/')?;
    let decimal = |p: &str| -> Option<u32> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Leading 0s aside, at most 3 significant digits in any field here.
        let digits = p.trim_start_matches('0');
        if digits.len() > 3 {
            return None;
        }
        Some(digits.parse().unwrap_or(0))
    };
    let ip = match IpAddr::from_str(addr) {
        Ok(ip) => ip,
        Err(_) => {
            let octets: Vec<u32> = addr.split('.').map(decimal).collect::<Option<_>>()?;
            let [a, b, c, d] = octets[..] else {
                return None;
            };
            let byte = |v: u32| u8::try_from(v).ok();
            IpAddr::V4(Ipv4Addr::new(byte(a)?, byte(b)?, byte(c)?, byte(d)?))
        }
    };
    let len = u8::try_from(decimal(len)?).ok()?;
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn strict_values() {
        assert_eq!(
            parse_legacy_cidr("f", "10.0.0.0/8").unwrap(),
            net("10.0.0.0/8")
        );
        assert_eq!(
            parse_legacy_cidr("f", "2001:DB8::/32").unwrap(),
            net("2001:db8::/32")
        );
        assert!(
            parse_legacy_cidr("f", "10.0.0.0/33")
                .unwrap_err()
                .sloppy
                .is_none()
        );
    }

    #[test]
    fn refused_values_keep_the_sloppy_network() {
        let sloppy = |s: &str| parse_legacy_cidr("f", s).unwrap_err().sloppy;
        assert_eq!(sloppy("10.0.0.1/8"), Some(net("10.0.0.0/8")));
        assert_eq!(sloppy("010.000.0.0/8"), Some(net("10.0.0.0/8")));
        assert_eq!(sloppy("10.0.0.0/08"), Some(net("10.0.0.0/8")));
        assert_eq!(sloppy("2001:db8::1/32"), Some(net("2001:db8::/32")));
        assert_eq!(sloppy("10.0.0.0"), None);
        assert_eq!(sloppy("256.0.0.0/8"), None);
        assert_eq!(sloppy("::ffff:10.0.0.0/104"), None);
        assert_eq!(sloppy(" 10.0.0.0/8"), None);
        assert_eq!(sloppy(""), None);
    }
}
