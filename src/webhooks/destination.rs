//! Where deliveries may go: `https` only, and never to loopback, private, link-local (cloud
//! metadata), unspecified or multicast addresses, unless the development settings allow them.
//!
//! Checked twice: at create and update for a literal address in the URL (host names are not
//! resolved then), and at every attempt for the addresses the name resolves to, by the HTTP
//! client's own resolver ([`GuardedResolver`]): it resolves, drops every address that fails the
//! check, and the client connects only to what is left. So a name that resolves to a public
//! address at one moment and to 127.0.0.1 the next (DNS rebinding) is refused the second time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// What the settings allow beyond public `https` destinations.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    pub http: bool,
    pub private_networks: bool,
}

/// Why a URL is refused (the text is the message of a 400 with `param: "url"`).
pub fn check_url(text: &str, allow: Allowance) -> Result<Url, &'static str> {
    let url = Url::parse(text).map_err(|_| "must be an absolute URL")?;
    match url.scheme() {
        "https" => {}
        "http" if allow.http => {}
        _ => return Err("must be an https URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials");
    }
    let host = url.host().ok_or("must have a host")?;
    let literal = match host {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    };
    if let Some(ip) = literal {
        if !allow.private_networks && !is_public(ip) {
            return Err(
                "must not be a loopback, private, link-local, unspecified or multicast address",
            );
        }
    }
    Ok(url)
}

/// Whether an address may receive deliveries in the default configuration. An IPv4-mapped IPv6
/// address is judged by its IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        // 0.0.0.0/8 ("this network": Linux connects 0.x.y.z to the host itself).
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT: inside a provider's network.
        || (a == 100 && (64..128).contains(&b)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7, unique local
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local
        || (first & 0xffc0) == 0xfe80)
}

/// The HTTP client's resolver: the system's, then only the addresses that pass (all of them
/// when private networks are allowed). A name left with none fails to connect, and the attempt
/// records why; nothing is sent.
pub struct GuardedResolver {
    pub allow_private_networks: bool,
}

/// The error of a name that resolves only to refused addresses.
#[derive(Debug, thiserror::Error)]
#[error("destination refused: the name resolves only to non-public addresses")]
pub struct Refused;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private_networks;
        Box::pin(async move {
            let resolved = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = resolved
                .filter(|addr| allow_private || is_public(addr.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Allowance = Allowance {
        http: false,
        private_networks: false,
    };

    /// No connection is made: these are checks of addresses only.
    #[test]
    fn non_public_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip} passed");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(is_public(ip), "{ip} refused");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_and_literal_addresses() {
        assert!(check_url("https://partner.example/hooks", STRICT).is_ok());
        // Names are not resolved here.
        assert!(check_url("https://localhost/hooks", STRICT).is_ok());
        assert!(check_url("https://93.184.216.34/hooks", STRICT).is_ok());
        for bad in [
            "http://partner.example/hooks",
            "ftp://partner.example/",
            "partner.example/hooks",
            "https://127.0.0.1/hooks",
            "https://[::1]/hooks",
            "https://[::ffff:7f00:1]/hooks",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.8:8443/",
            "https://[fd00::1]/",
            "https://user:pass@partner.example/",
        ] {
            assert!(check_url(bad, STRICT).is_err(), "{bad} passed");
        }
        let dev = Allowance {
            http: true,
            private_networks: true,
        };
        assert!(check_url("http://127.0.0.1:8080/hooks", dev).is_ok());
    }
}
