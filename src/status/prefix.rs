//! `--web.external-url` and `--web.route-prefix`, as Prometheus has them: routes are served
//! under the route prefix (default: the path of the external URL), links on the page start
//! with the external URL's path (a reverse proxy may strip it before forwarding).
//!
//! Not here: routing itself (`http`).

/// Why a flag was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrefixError {
    #[error("--web.external-url {0:?} is not an absolute http:// or https:// URL")]
    ExternalUrl(String),
    #[error("--web.route-prefix {0:?} must be a path (letters, digits, -._~/ only)")]
    RoutePrefix(String),
}

/// Path prefixes, each "" (the root) or "/a/b" (no trailing slash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebPrefix {
    /// Where routes are served: `/metrics` is at `{route}/metrics`.
    pub(crate) route: String,
    /// What links start with: the external URL's path, else the route prefix.
    pub(crate) links: String,
}

/// "/a/b/" or "a/b" or "/" → "/a/b" or ""; `None` for characters a path must not carry
/// unencoded here (quotes, spaces, query or fragment marks).
fn normalise(p: &str) -> Option<String> {
    let ok = p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/%".contains(&b));
    if !ok {
        return None;
    }
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    Some(parts.iter().map(|s| format!("/{s}")).collect())
}

impl WebPrefix {
    pub fn from_flags(
        external_url: Option<&str>,
        route_prefix: Option<&str>,
    ) -> Result<Self, PrefixError> {
        let external = match external_url.filter(|u| !u.is_empty()) {
            None => None,
            Some(u) => {
                let bad = || PrefixError::ExternalUrl(u.to_string());
                let uri: hyper::Uri = u.parse().map_err(|_| bad())?;
                let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
                if !scheme_ok || uri.authority().is_none() || uri.query().is_some() {
                    return Err(bad());
                }
                Some(normalise(uri.path()).ok_or_else(bad)?)
            }
        };
        let route = match route_prefix {
            Some(r) => normalise(r).ok_or_else(|| PrefixError::RoutePrefix(r.to_string()))?,
            None => external.clone().unwrap_or_default(),
        };
        let links = external.unwrap_or_else(|| route.clone());
        Ok(Self { route, links })
    }

    /// The request path relative to the route prefix ("/metrics"), or `None` when it lies
    /// outside. The prefix itself without a slash maps to "" (the caller redirects).
    pub(crate) fn strip<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.route.is_empty() {
            return Some(path);
        }
        let rest = path.strip_prefix(self.route.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_prefix_defaults_to_the_external_url_path() {
        let p = WebPrefix::from_flags(Some("https://mon.example.org/mailtls/"), None).unwrap();
        assert_eq!(p.route, "/mailtls");
        assert_eq!(p.links, "/mailtls");
        let p = WebPrefix::from_flags(Some("http://mon.example.org"), None).unwrap();
        assert_eq!((p.route.as_str(), p.links.as_str()), ("", ""));
        let p = WebPrefix::from_flags(None, None).unwrap();
        assert_eq!(p, WebPrefix::default());
    }

    #[test]
    fn proxy_that_strips_the_path_keeps_routes_at_the_root_and_links_under_it() {
        let p = WebPrefix::from_flags(Some("https://mon.example.org/mailtls"), Some("/")).unwrap();
        assert_eq!((p.route.as_str(), p.links.as_str()), ("", "/mailtls"));
        let p = WebPrefix::from_flags(None, Some("x/y/")).unwrap();
        assert_eq!((p.route.as_str(), p.links.as_str()), ("/x/y", "/x/y"));
    }

    #[test]
    fn bad_flags_are_refused() {
        for u in [
            "mon.example.org/x",
            "ftp://h/x",
            "http://h/x?y=1",
            "/only/path",
        ] {
            assert!(WebPrefix::from_flags(Some(u), None).is_err(), "{u}");
        }
        assert!(WebPrefix::from_flags(None, Some("/a b")).is_err());
        assert!(WebPrefix::from_flags(None, Some("/a\"b")).is_err());
    }

    #[test]
    fn strip_keeps_paths_under_the_route_prefix_only() {
        let p = WebPrefix::from_flags(None, Some("/mailtls")).unwrap();
        assert_eq!(p.strip("/mailtls/metrics"), Some("/metrics"));
        assert_eq!(p.strip("/mailtls/"), Some("/"));
        assert_eq!(p.strip("/mailtls"), Some(""));
        assert_eq!(p.strip("/mailtlsx/metrics"), None);
        assert_eq!(p.strip("/metrics"), None);
        assert_eq!(WebPrefix::default().strip("/metrics"), Some("/metrics"));
    }
}
