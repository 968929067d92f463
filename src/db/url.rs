//! The text of a multi-host URL, which sqlx does not parse: the host list, and
//! `target_session_attrs` (see [`super::hosts`]). Errors never contain the URL.

/// What is wrong with a URL. Never contains the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

impl UrlError {
    pub(super) fn new(reason: String) -> Self {
        Self(reason)
    }
}

/// Removes `target_session_attrs` from the query string; true for a read-write target.
pub(super) fn take_session_attrs(url: &str) -> Result<(String, bool), UrlError> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), false));
    };
    let mut read_write = false;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => match value {
                "any" => read_write = false,
                "read-write" | "primary" => read_write = true,
                other => {
                    return Err(UrlError::new(format!(
                        "target_session_attrs={other} is not supported (any, read-write or \
                         primary): this service writes"
                    )))
                }
            },
            _ => kept.push(pair),
        }
    }
    Ok(match kept.is_empty() {
        true => (head.to_owned(), read_write),
        false => (format!("{head}?{}", kept.join("&")), read_write),
    })
}

pub(super) type HostList<'a> = (String, Vec<(&'a str, Option<u16>)>, String);

/// For a URL with more than one host: the text before the hosts (scheme and user info), the
/// hosts with their ports, and the text after them (path and query). `None` for one host.
pub(super) fn split_hosts(url: &str) -> Result<Option<HostList<'_>>, UrlError> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Ok(None);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let hosts_start = authority.rfind('@').map_or(0, |i| i + 1);
    let hosts = &authority[hosts_start..];
    if !hosts.contains(',') {
        return Ok(None);
    }
    let mut list = Vec::new();
    for (i, entry) in hosts.split(',').enumerate() {
        let bad = |what: &str| UrlError::new(format!("host {} of the host list {what}", i + 1));
        // [v6]:port, [v6], name:port, name
        let (host, port) = if entry.starts_with('[') {
            match entry.find(']') {
                Some(close) => (&entry[..=close], entry[close + 1..].strip_prefix(':')),
                None => return Err(bad("has an unclosed [")),
            }
        } else {
            match entry.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad("is empty"));
        }
        let port = match port {
            None => None,
            Some(port) => Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("has an invalid port number"))?,
            ),
        };
        list.push((host, port));
    }
    let prefix = url[..scheme_end + hosts_start].to_owned();
    let suffix = rest[authority_end..].to_owned();
    Ok(Some((prefix, list, suffix)))
}
