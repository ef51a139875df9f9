//! The address guard every user-supplied URL passes: media inputs when they are fetched, and
//! callback URLs when they are accepted and when they are called. A request may only reach
//! public unicast addresses, unless the operator's allow-list names the host or the address.

use kinora_core::{Error, ErrorCode};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Hosts and networks the operator lets requests reach although the guard would refuse
/// them, e.g. an intranet file server.
///
/// Entries are exact host names (`files.intranet.example`), host suffixes
/// (`*.intranet.example`, which matches every name below `intranet.example` but not that
/// name itself), single addresses (`10.1.2.3`, `::1`) and networks in CIDR notation
/// (`10.20.0.0/16`, `::1/128`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct AllowList {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq)]
enum Entry {
    Host(String),
    /// Stored with its leading dot, so matching is a plain `ends_with`.
    Suffix(String),
    Net(Net),
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Net {
    base: IpAddr,
    prefix: u8,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                in_v4(u32::from(ip), u32::from(base), u32::from(self.prefix))
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                in_v6(u128::from(ip), u128::from(base), u32::from(self.prefix))
            }
            _ => false,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Host(host) => f.write_str(host),
            Entry::Suffix(suffix) => write!(f, "*{suffix}"),
            Entry::Net(net) => write!(f, "{}/{}", net.base, net.prefix),
        }
    }
}

impl AllowList {
    /// Parses the configured entries; a bad entry is an [`ErrorCode::Config`] error naming it.
    pub fn parse(entries: &[String]) -> Result<Self, Error> {
        let entries = entries
            .iter()
            .map(|raw| {
                parse_entry(raw).map_err(|why| {
                    Error::new(
                        ErrorCode::Config,
                        format!("fetch allow-list entry {raw:?} is invalid: {why}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the host name is listed, exactly or under a listed suffix. An IP literal (with
    /// or without IPv6 brackets) is checked as an address.
    pub fn allows_host(&self, host: &str) -> bool {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.allows_ip(ip);
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        self.entries.iter().any(|entry| match entry {
            Entry::Host(name) => *name == host,
            Entry::Suffix(suffix) => host.ends_with(suffix.as_str()),
            Entry::Net(_) => false,
        })
    }

    /// Whether the address is inside a listed address or network. An IPv4-mapped IPv6
    /// address also matches the IPv4 entries, as it reaches the same host.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.entries.iter().any(|entry| match entry {
            Entry::Net(net) => net.contains(ip) || net.contains(canonical),
            _ => false,
        })
    }
}

impl TryFrom<Vec<String>> for AllowList {
    type Error = Error;

    fn try_from(entries: Vec<String>) -> Result<Self, Error> {
        Self::parse(&entries)
    }
}

impl From<AllowList> for Vec<String> {
    fn from(list: AllowList) -> Self {
        list.entries.iter().map(ToString::to_string).collect()
    }
}

fn parse_entry(raw: &str) -> Result<Entry, String> {
    let entry = raw.trim();
    if entry.is_empty() {
        return Err("it is empty".into());
    }
    if let Some((addr, prefix)) = entry.split_once('/') {
        return parse_net(addr, prefix).map(Entry::Net);
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(Entry::Net(Net { base: ip, prefix }));
    }
    if let Some(suffix) = entry.strip_prefix("*.") {
        let name = parse_host_name(suffix)?;
        return Ok(Entry::Suffix(format!(".{name}")));
    }
    if entry.contains('*') {
        return Err("a wildcard is only allowed as a leading \"*.\"".into());
    }
    parse_host_name(entry).map(Entry::Host)
}

fn parse_net(addr: &str, prefix: &str) -> Result<Net, String> {
    let base: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if base.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("the prefix length must be a number from 0 to {max}"))?;
    let net = Net { base, prefix };
    // Set host bits usually mean a typo in the prefix length; refusing them beats silently
    // allowing a different network than intended.
    let masked = match base {
        IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask_v4(u32::from(prefix)))),
        IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask_v6(u32::from(prefix)))),
    };
    if masked != base {
        return Err(format!(
            "host bits are set; the network is {masked}/{prefix}"
        ));
    }
    Ok(net)
}

/// Lower-cased, without a trailing dot, in the form URLs carry it (so internationalized names
/// must be given in their `xn--` form).
fn parse_host_name(raw: &str) -> Result<String, String> {
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err("a host name must have 1 to 253 characters".into());
    }
    if !name.is_ascii() {
        return Err("write internationalized host names in their xn-- form".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every part of a host name must have 1 to 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("a host name may only contain letters, digits, '-', '_' and '.'".into());
        }
    }
    // URL parsers read a name ending in a numeric label as an IPv4 address ("10.1" is
    // 10.0.0.1), so such an entry would never match a host name.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("it looks like an IP address but is not one".into());
    }
    Ok(name)
}

fn mask_v4(prefix: u32) -> u32 {
    u32::MAX.checked_shl(32 - prefix.min(32)).unwrap_or(0)
}

fn mask_v6(prefix: u32) -> u128 {
    u128::MAX.checked_shl(128 - prefix.min(128)).unwrap_or(0)
}

fn in_v4(ip: u32, net: u32, prefix: u32) -> bool {
    ip & mask_v4(prefix) == net
}

fn in_v6(ip: u128, net: u128, prefix: u32) -> bool {
    ip & mask_v6(prefix) == net
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

/// IPv4 ranges that are never a public server, most specific first. Cloud metadata is named
/// on its own because it is what a server-side request forgery usually goes after.
const V4_RANGES: &[(u32, u32, &str)] = &[
    (v4(169, 254, 169, 254), 32, "cloud metadata"),
    (v4(100, 100, 100, 200), 32, "cloud metadata"),
    (v4(0, 0, 0, 0), 32, "unspecified"),
    (v4(255, 255, 255, 255), 32, "broadcast"),
    (v4(0, 0, 0, 0), 8, "this network"),
    (v4(127, 0, 0, 0), 8, "loopback"),
    (v4(10, 0, 0, 0), 8, "private network"),
    (v4(172, 16, 0, 0), 12, "private network"),
    (v4(192, 168, 0, 0), 16, "private network"),
    (v4(169, 254, 0, 0), 16, "link-local"),
    (v4(100, 64, 0, 0), 10, "carrier-grade NAT"),
    (v4(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (v4(192, 0, 2, 0), 24, "documentation"),
    (v4(198, 51, 100, 0), 24, "documentation"),
    (v4(203, 0, 113, 0), 24, "documentation"),
    (v4(198, 18, 0, 0), 15, "benchmarking"),
    (v4(224, 0, 0, 0), 4, "multicast"),
    (v4(240, 0, 0, 0), 4, "reserved"),
];

const fn v6(segments: [u16; 8]) -> u128 {
    let mut value = 0u128;
    let mut i = 0;
    while i < 8 {
        value = (value << 16) | segments[i] as u128;
        i += 1;
    }
    value
}

/// IPv6 ranges without an embedded IPv4 address that are never a public server, most
/// specific first.
const V6_RANGES: &[(u128, u32, &str)] = &[
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]),
        128,
        "cloud metadata",
    ),
    (v6([0, 0, 0, 0, 0, 0, 0, 0]), 128, "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1]), 128, "loopback"),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48, "local-use NAT64"),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0]), 64, "discard-only"),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7, "private network"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10, "link-local"),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0]), 10, "site-local"),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8, "multicast"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32, "documentation"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0]), 20, "documentation"),
];

/// Why an address is refused, or `None` if it is a public unicast address.
///
/// IPv6 addresses that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 and 6to4)
/// are judged by that IPv4 address, since that is the host they end up reaching. IPv6
/// addresses outside the global unicast block 2000::/3 are refused as reserved.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_reason(ip),
        IpAddr::V6(ip) => v6_reason(ip),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let ip = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, reason)| *reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    if let Some((_, _, reason)) = V6_RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(bits, *net, *prefix))
    {
        return Some(reason);
    }
    if let Some(embedded) = embedded_v4(bits) {
        return v4_reason(embedded);
    }
    if !in_v6(bits, v6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3) {
        return Some("reserved");
    }
    None
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it.
fn embedded_v4(bits: u128) -> Option<Ipv4Addr> {
    // Truncation keeps exactly the 32 bits wanted.
    let low = Ipv4Addr::from(bits as u32);
    if in_v6(bits, v6([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96) // IPv4-mapped
        || in_v6(bits, 0, 96) // IPv4-compatible
        || in_v6(bits, v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96)
    // NAT64
    {
        return Some(low);
    }
    if in_v6(bits, v6([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16) {
        // 6to4 carries the address in bits 16..48.
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Option<&'static str> {
        let ip: IpAddr = text
            .parse()
            .unwrap_or_else(|_| panic!("bad test address {text}"));
        forbidden_reason(ip)
    }

    fn check(cases: &[(&str, Option<&str>)]) {
        for (addr, want) in cases {
            assert_eq!(reason(addr), *want, "{addr}");
        }
    }

    #[test]
    fn ipv4_special_ranges_and_their_edges() {
        let private = Some("private network");
        check(&[
            ("0.0.0.0", Some("unspecified")),
            ("0.0.0.1", Some("this network")),
            ("0.255.255.255", Some("this network")),
            ("1.0.0.0", None),
            ("9.255.255.255", None),
            ("10.0.0.0", private),
            ("10.255.255.255", private),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.64.0.0", Some("carrier-grade NAT")),
            ("100.127.255.255", Some("carrier-grade NAT")),
            ("100.128.0.0", None),
            ("100.100.100.200", Some("cloud metadata")),
            ("100.100.100.201", Some("carrier-grade NAT")),
            ("126.255.255.255", None),
            ("127.0.0.0", Some("loopback")),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.255", Some("loopback")),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.254.0.0", Some("link-local")),
            ("169.254.169.253", Some("link-local")),
            ("169.254.169.254", Some("cloud metadata")),
            ("169.254.169.255", Some("link-local")),
            ("169.254.255.255", Some("link-local")),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.16.0.0", private),
            ("172.31.255.255", private),
            ("172.32.0.0", None),
            ("191.255.255.255", None),
            ("192.0.0.0", Some("IETF protocol assignments")),
            ("192.0.0.255", Some("IETF protocol assignments")),
            ("192.0.1.0", None),
            ("192.0.2.0", Some("documentation")),
            ("192.0.2.255", Some("documentation")),
            ("192.0.3.0", None),
            ("192.167.255.255", None),
            ("192.168.0.0", private),
            ("192.168.255.255", private),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.18.0.0", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.20.0.0", None),
            ("198.51.99.255", None),
            ("198.51.100.0", Some("documentation")),
            ("198.51.100.255", Some("documentation")),
            ("198.51.101.0", None),
            ("203.0.112.255", None),
            ("203.0.113.0", Some("documentation")),
            ("203.0.113.255", Some("documentation")),
            ("203.0.114.0", None),
            ("223.255.255.255", None),
            ("224.0.0.0", Some("multicast")),
            ("239.255.255.255", Some("multicast")),
            ("240.0.0.0", Some("reserved")),
            ("255.255.255.254", Some("reserved")),
            ("255.255.255.255", Some("broadcast")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
        ]);
    }

    #[test]
    fn ipv6_special_ranges_and_their_edges() {
        let private = Some("private network");
        check(&[
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
            ("2000::", None),
            ("2606:4700:4700::1111", None),
            ("3fff:1000::", None),
            (
                "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some("documentation"),
            ),
            ("3fff::", Some("documentation")),
            ("4000::", Some("reserved")),
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("2001:db8::", Some("documentation")),
            (
                "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
                Some("documentation"),
            ),
            ("2001:db9::", None),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
            ("fc00::", private),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", private),
            ("fd00:ec2::254", Some("cloud metadata")),
            ("fd00:ec2::253", private),
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("reserved")),
            ("fe80::", Some("link-local")),
            ("fe80::1", Some("link-local")),
            (
                "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some("link-local"),
            ),
            ("fec0::", Some("site-local")),
            (
                "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                Some("site-local"),
            ),
            ("ff00::", Some("multicast")),
            ("ff02::1", Some("multicast")),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some("multicast")),
            ("100::", Some("discard-only")),
            ("100::ffff:ffff:ffff:ffff", Some("discard-only")),
            ("64:ff9b:1::", Some("local-use NAT64")),
            (
                "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
                Some("local-use NAT64"),
            ),
        ]);
    }

    #[test]
    fn ipv6_forms_with_an_embedded_ipv4_are_judged_by_it() {
        check(&[
            // IPv4-mapped
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private network")),
            ("::ffff:169.254.169.254", Some("cloud metadata")),
            ("::ffff:8.8.8.8", None),
            ("::ffff:0.0.0.0", Some("unspecified")),
            // IPv4-compatible
            ("::2", Some("this network")),
            ("::127.0.0.1", Some("loopback")),
            ("::192.168.1.1", Some("private network")),
            ("::8.8.8.8", None),
            // NAT64
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b::a00:1", Some("private network")),
            ("64:ff9b::a9fe:a9fe", Some("cloud metadata")),
            ("64:ff9b::808:808", None),
            ("64:ff9b::1:0:0", Some("reserved")),
            // 6to4
            ("2002:7f00:1::", Some("loopback")),
            ("2002:a00:1::1", Some("private network")),
            ("2002:a9fe:a9fe::", Some("cloud metadata")),
            ("2002:6440::", Some("carrier-grade NAT")),
            ("2002:808:808::1", None),
            ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None),
            ("2003::", None),
        ]);
    }

    fn list(entries: &[&str]) -> AllowList {
        let owned: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        match AllowList::parse(&owned) {
            Ok(list) => list,
            Err(e) => panic!("{entries:?}: {e}"),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or_else(|_| panic!("bad test address {text}"))
    }

    #[test]
    fn allow_list_matches_hosts_suffixes_and_networks() {
        let allow = list(&[
            "Files.Intranet.Example.",
            "*.corp.example",
            "127.0.0.1/32",
            "10.20.0.0/16",
            "::1/128",
            "192.168.7.7",
            "fd12::/16",
        ]);
        assert!(allow.allows_host("files.intranet.example"));
        assert!(allow.allows_host("FILES.intranet.example."));
        assert!(!allow.allows_host("other.intranet.example"));
        assert!(!allow.allows_host("xfiles.intranet.example"));
        assert!(allow.allows_host("a.corp.example"));
        assert!(allow.allows_host("b.a.corp.example"));
        assert!(!allow.allows_host("corp.example"));
        assert!(!allow.allows_host("evilcorp.example"));
        assert!(allow.allows_host("127.0.0.1"));
        assert!(allow.allows_host("[::1]"));
        assert!(!allow.allows_host("127.0.0.2"));

        assert!(allow.allows_ip(ip("127.0.0.1")));
        assert!(!allow.allows_ip(ip("127.0.0.2")));
        assert!(allow.allows_ip(ip("::ffff:127.0.0.1")));
        assert!(allow.allows_ip(ip("10.20.0.0")));
        assert!(allow.allows_ip(ip("10.20.255.255")));
        assert!(!allow.allows_ip(ip("10.21.0.0")));
        assert!(!allow.allows_ip(ip("10.19.255.255")));
        assert!(allow.allows_ip(ip("::1")));
        assert!(!allow.allows_ip(ip("::2")));
        assert!(allow.allows_ip(ip("192.168.7.7")));
        assert!(!allow.allows_ip(ip("192.168.7.8")));
        assert!(allow.allows_ip(ip("fd12:ffff::1")));
        assert!(!allow.allows_ip(ip("fd13::1")));

        let everything = list(&["0.0.0.0/0", "::/0"]);
        assert!(everything.allows_ip(ip("169.254.169.254")));
        assert!(everything.allows_ip(ip("fe80::1")));
        assert!(!AllowList::default().allows_ip(ip("8.8.8.8")));
        assert!(!AllowList::default().allows_host("localhost"));
    }

    #[test]
    fn allow_list_refuses_bad_entries_by_name() {
        for bad in [
            "",
            "  ",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.1/8",
            "10.0.0.0/x",
            "10.0.0.0/",
            "not an ip/8",
            "*",
            "*.",
            "a.*.example",
            "files*.example",
            "http://files.example",
            "files.example:8080",
            "files..example",
            "-_ok.example/8",
            "10.1",
            "256.1.1.1",
            "bücher.example",
            &"a".repeat(64),
        ] {
            let err = match AllowList::parse(&[bad.to_string()]) {
                Ok(list) => panic!("{bad:?} was accepted as {list:?}"),
                Err(e) => e,
            };
            assert_eq!(err.code(), ErrorCode::Config, "{bad:?}");
            assert!(
                err.message().contains(&format!("{bad:?}")),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn allow_list_round_trips_through_serde() {
        let allow = list(&["files.example", "*.corp.example", "10.0.0.0/8", "::1"]);
        let json = serde_json::to_value(&allow).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!(["files.example", "*.corp.example", "10.0.0.0/8", "::1/128"])
        );
        let back: AllowList = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, allow);
        assert!(serde_json::from_value::<AllowList>(serde_json::json!(["10.0.0.1/8"])).is_err());
    }
}
