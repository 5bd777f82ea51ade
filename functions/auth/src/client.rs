//! Who is on the other end of a request, as far as the network can tell.
//!
//! Brute-force counters and the audit log need the client's address, and a
//! client must not be able to choose it. The peer of the connection (API
//! Gateway's `requestContext.http.sourceIp` under Lambda, the socket peer
//! under `constellation serve`) cannot be forged; `X-Forwarded-For` can,
//! except for the entries that trusted proxies appended on its right. So
//! the header is read only when proxies are configured, and then only the
//! entry that many hops from the right — never the leftmost, which is
//! whatever the client sent.
//!
//! Counters key IPv6 clients by their /64: one subscriber usually holds a
//! whole /64 and could otherwise walk through 2^64 addresses.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The client's address, when one is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(Option<IpAddr>);

/// What the audit log records when no address is known.
pub const UNKNOWN_ADDR: &str = "unknown";

impl ClientAddr {
    /// An address (IPv4-mapped IPv6 addresses become IPv4).
    pub fn new(ip: IpAddr) -> Self {
        Self(Some(ip.to_canonical()))
    }

    /// No address is known (a test without a socket, a malformed context).
    pub fn unknown() -> Self {
        Self(None)
    }

    /// The address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.0
    }

    /// What failures from this client are counted under: the IPv4 address,
    /// or the IPv6 /64 (`2001:db8:1:2::/64`); `None` when unknown, since one
    /// shared counter for every unknown client would let anyone lock
    /// everyone out.
    pub fn counter_subject(&self) -> Option<String> {
        match self.0? {
            IpAddr::V4(v4) => Some(v4.to_string()),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1_u128 << 64) - 1);
                Some(format!("{}/64", Ipv6Addr::from(prefix)))
            }
        }
    }

    /// Resolves the client from the connection's `peer` and the
    /// `X-Forwarded-For` header, trusting `trusted_proxies` hops.
    ///
    /// The chain is the header's entries followed by the peer (API Gateway
    /// appends `sourceIp` to the header itself, so a rightmost entry equal to
    /// the peer is the same hop, not another). The client is the entry
    /// `trusted_proxies` hops left of the peer. A header too short for that,
    /// or with an unparsable entry in the trusted part, did not come through
    /// the configured proxies: the peer is used.
    pub fn resolve(
        peer: Option<IpAddr>,
        forwarded_for: Option<&str>,
        trusted_proxies: usize,
    ) -> Self {
        let peer = peer.map(|ip| ip.to_canonical());
        if trusted_proxies == 0 {
            return Self(peer);
        }
        let Some(header) = forwarded_for else {
            return Self(peer);
        };
        let mut entries: Vec<&str> = header.split(',').map(str::trim).collect();
        if let (Some(last), Some(p)) = (entries.last(), peer)
            && last.parse::<IpAddr>().ok().map(|ip| ip.to_canonical()) == Some(p)
        {
            entries.pop();
        }
        // Hop 0 is the peer; hop n is the n-th header entry from the right.
        let Some(index) = entries.len().checked_sub(trusted_proxies) else {
            return Self(peer);
        };
        match entries.get(index).and_then(|e| e.parse::<IpAddr>().ok()) {
            Some(ip) => Self::new(ip),
            None => Self(peer),
        }
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str(UNKNOWN_ADDR),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let c = ClientAddr::resolve(ip("192.0.2.7"), Some("198.51.100.1, 10.0.0.1"), 0);
        assert_eq!(c.ip(), ip("192.0.2.7"));
        assert_eq!(
            ClientAddr::resolve(None, Some("198.51.100.1"), 0).ip(),
            None
        );
    }

    #[test]
    fn trusted_hops_are_counted_from_the_right() {
        // client -> proxy (appends client) -> us; the client forged an entry.
        let header = Some("6.6.6.6, 198.51.100.1");
        let one = ClientAddr::resolve(ip("10.0.0.1"), header, 1);
        assert_eq!(one.ip(), ip("198.51.100.1"));
        let two = ClientAddr::resolve(ip("10.0.0.1"), Some("6.6.6.6, 198.51.100.1, 10.0.0.9"), 2);
        assert_eq!(two.ip(), ip("198.51.100.1"));
        // API Gateway appends sourceIp (the peer) itself: the same hop.
        let apigw = ClientAddr::resolve(ip("10.0.0.1"), Some("6.6.6.6, 198.51.100.1, 10.0.0.1"), 1);
        assert_eq!(apigw.ip(), ip("198.51.100.1"));
    }

    #[test]
    fn a_header_that_did_not_pass_the_proxies_falls_back_to_the_peer() {
        let peer = ip("10.0.0.1");
        assert_eq!(
            ClientAddr::resolve(peer, Some("198.51.100.1"), 2).ip(),
            peer
        );
        assert_eq!(ClientAddr::resolve(peer, None, 1).ip(), peer);
        assert_eq!(
            ClientAddr::resolve(peer, Some("1.2.3.4, junk"), 1).ip(),
            peer
        );
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a = ClientAddr::new("2001:db8:1:2::1".parse().unwrap());
        let b = ClientAddr::new("2001:db8:1:2:ffff:eeee:dddd:cccc".parse().unwrap());
        let c = ClientAddr::new("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a.counter_subject().as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(a.counter_subject(), b.counter_subject());
        assert_ne!(a.counter_subject(), c.counter_subject());
        assert_eq!(
            a.to_string(),
            "2001:db8:1:2::1",
            "the audit keeps the address"
        );
        let mapped = ClientAddr::new("::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(mapped.counter_subject().as_deref(), Some("192.0.2.1"));
        assert_eq!(ClientAddr::unknown().counter_subject(), None);
        assert_eq!(ClientAddr::unknown().to_string(), "unknown");
    }
}
