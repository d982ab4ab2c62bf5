//! The `--service-lb-ip-pool`: IPv4 CIDRs and ranges, parsed once at start, asked whether an
//! address is in it and for its lowest address not in use.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

/// The addresses LoadBalancer Services may get: disjoint, sorted, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    ranges: Vec<RangeInclusive<u32>>,
}

impl Pool {
    /// Parses `a.b.c.d/n` and `a.b.c.d-e.f.g.h` items, comma-separated. A CIDR shorter than /31
    /// loses its network and broadcast addresses. `Ok(None)` when there is no item: no pool.
    pub fn parse(text: &str) -> Result<Option<Pool>, String> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            ranges.push(parse_item(item)?);
        }
        if ranges.is_empty() {
            return Ok(None);
        }
        ranges.sort_by_key(|r| *r.start());
        let mut merged: Vec<RangeInclusive<u32>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if u64::from(*r.start()) <= u64::from(*last.end()) + 1 => {
                    *last = *last.start()..=(*last.end()).max(*r.end());
                }
                _ => merged.push(r),
            }
        }
        Ok(Some(Pool { ranges: merged }))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.ranges.iter().any(|r| r.contains(&ip))
    }

    /// How many addresses the pool has.
    pub fn size(&self) -> u64 {
        self.ranges.iter().map(|r| u64::from(*r.end()) - u64::from(*r.start()) + 1).sum()
    }

    /// The lowest address of the pool, at or above `from`, that is not a key of `used`.
    pub fn lowest_free<V>(&self, used: &BTreeMap<Ipv4Addr, V>, from: Ipv4Addr) -> Option<Ipv4Addr> {
        let from = u32::from(from);
        for range in self.ranges.iter().filter(|r| *r.end() >= from) {
            let start = (*range.start()).max(from);
            let mut candidate = u64::from(start);
            for ip in used.range(Ipv4Addr::from(start)..=Ipv4Addr::from(*range.end())).map(|(ip, _)| ip) {
                if u64::from(u32::from(*ip)) != candidate {
                    break;
                }
                candidate += 1;
            }
            if candidate <= u64::from(*range.end()) {
                return u32::try_from(candidate).ok().map(Ipv4Addr::from);
            }
        }
        None
    }
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if r.start() == r.end() {
                write!(f, "{}", Ipv4Addr::from(*r.start()))?;
            } else {
                write!(f, "{}-{}", Ipv4Addr::from(*r.start()), Ipv4Addr::from(*r.end()))?;
            }
        }
        Ok(())
    }
}

fn parse_ip(item: &str, ip: &str) -> Result<u32, String> {
    ip.trim()
        .parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| format!("{item:?}: {:?} is not an IPv4 address", ip.trim()))
}

fn parse_item(item: &str) -> Result<RangeInclusive<u32>, String> {
    if let Some((ip, len)) = item.split_once('/') {
        let network = parse_ip(item, ip)?;
        let len: u8 = len
            .trim()
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{item:?}: the prefix length must be 0 to 32"))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        if network & !mask != 0 {
            return Err(format!(
                "{item:?} has host bits set (the network is {}/{len})",
                Ipv4Addr::from(network & mask)
            ));
        }
        let broadcast = network | !mask;
        // A /31 or /32 has no network and broadcast address to skip (RFC 3021).
        return Ok(if len < 31 { network + 1..=broadcast - 1 } else { network..=broadcast });
    }
    if let Some((first, last)) = item.split_once('-') {
        let (first, last) = (parse_ip(item, first)?, parse_ip(item, last)?);
        if first > last {
            return Err(format!("{item:?}: the range ends before it starts"));
        }
        return Ok(first..=last);
    }
    Err(format!("{item:?}: expected a CIDR (a.b.c.d/n) or a range (a.b.c.d-e.f.g.h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    #[test]
    fn pools_parse_cidrs_and_ranges() {
        let cases: [(&str, Result<Option<&str>, &str>); 12] = [
            ("192.0.2.8/30", Ok(Some("192.0.2.9-192.0.2.10"))),
            ("192.0.2.8/31", Ok(Some("192.0.2.8-192.0.2.9"))),
            ("192.0.2.8/32", Ok(Some("192.0.2.8"))),
            ("192.0.2.10-192.0.2.20", Ok(Some("192.0.2.10-192.0.2.20"))),
            (" 10.0.0.5-10.0.0.5 , 192.0.2.0/29", Ok(Some("10.0.0.5,192.0.2.1-192.0.2.6"))),
            ("192.0.2.1-192.0.2.4,192.0.2.3-192.0.2.9,192.0.2.10-192.0.2.10", Ok(Some("192.0.2.1-192.0.2.10"))),
            ("", Ok(None)),
            (" , ", Ok(None)),
            ("192.0.2.1/30", Err("has host bits set (the network is 192.0.2.0/30)")),
            ("192.0.2.9-192.0.2.1", Err("ends before it starts")),
            ("192.0.2.1", Err("expected a CIDR")),
            ("2001:db8::/64", Err("is not an IPv4 address")),
        ];
        for (text, want) in cases {
            match (Pool::parse(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got.map(|p| p.to_string()).as_deref(), want, "{text:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text:?}: {got}"),
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(Pool::parse("192.0.2.0/33").is_err());
        assert!(Pool::parse("192.0.2.0/24,nope").is_err());
    }

    #[test]
    fn the_lowest_free_address_is_found_across_ranges() {
        let pool = Pool::parse("192.0.2.8/30,198.51.100.7-198.51.100.8").ok().flatten();
        let Some(pool) = pool else { panic!("the pool parses") };
        assert_eq!(pool.size(), 4);
        let used = |ips: &[&str]| ips.iter().map(|s| (ip(s), ())).collect::<BTreeMap<_, _>>();
        let zero = Ipv4Addr::UNSPECIFIED;
        assert_eq!(pool.lowest_free(&used(&[]), zero), Some(ip("192.0.2.9")));
        assert_eq!(pool.lowest_free(&used(&["192.0.2.9", "10.0.0.1"]), zero), Some(ip("192.0.2.10")));
        assert_eq!(pool.lowest_free(&used(&["192.0.2.10"]), zero), Some(ip("192.0.2.9")));
        assert_eq!(pool.lowest_free(&used(&["192.0.2.9", "192.0.2.10"]), zero), Some(ip("198.51.100.7")));
        assert_eq!(pool.lowest_free(&used(&["192.0.2.9", "192.0.2.10", "198.51.100.7", "198.51.100.8"]), zero), None);
        assert_eq!(pool.lowest_free(&used(&[]), ip("192.0.2.10")), Some(ip("192.0.2.10")));
        assert_eq!(pool.lowest_free(&used(&["198.51.100.7"]), ip("192.0.2.11")), Some(ip("198.51.100.8")));
        assert!(pool.contains(ip("198.51.100.8")));
        assert!(!pool.contains(ip("192.0.2.8")), "the network address is skipped");
        assert!(!pool.contains(ip("192.0.2.11")), "the broadcast address is skipped");
        let top = Pool::parse("255.255.255.254/31").ok().flatten();
        let Some(top) = top else { panic!("the pool parses") };
        assert_eq!(top.lowest_free(&used(&["255.255.255.254"]), zero), Some(ip("255.255.255.255")));
        assert_eq!(top.lowest_free(&used(&["255.255.255.254", "255.255.255.255"]), zero), None);
    }
}
