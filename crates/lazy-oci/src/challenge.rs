//! Parser for `WWW-Authenticate` challenges (RFC 7235) as registries send them:
//! `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.

/// An authentication challenge the client can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Token authentication: get a bearer token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass to the token endpoint.
        service: Option<String>,
        /// The scope the registry asked for.
        scope: Option<String>,
    },
    /// HTTP Basic authentication.
    Basic,
}

/// Parses a `WWW-Authenticate` header value; `None` if it is malformed or of
/// an unsupported scheme.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], &header[i..]),
        None => (header, ""),
    };
    let params = parse_params(rest)?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: param("realm").filter(|r| !r.is_empty())?,
            service: param("service"),
            scope: param("scope"),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else {
        None
    }
}

/// Parses `k=v, k="quoted, \"v\""` lists. Returns `None` on malformed input.
fn parse_params(input: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            return Some(params);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        params.push((key, value));
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.next() {
            None => return Some(params),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        }
    }

    #[test]
    fn docker_hub_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenge(h),
            Some(bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/busybox:pull")
            ))
        );
    }

    #[test]
    fn commas_and_escapes_inside_quotes() {
        let h = r#"bearer  scope="repository:a/b:pull,push" , realm="https://x/t?a=1,2", service="s \"q\"""#;
        assert_eq!(
            parse_challenge(h),
            Some(bearer(
                "https://x/t?a=1,2",
                Some(r#"s "q""#),
                Some("repository:a/b:pull,push")
            ))
        );
    }

    #[test]
    fn unquoted_values_and_missing_params() {
        assert_eq!(
            parse_challenge("Bearer realm=https://t/token"),
            Some(bearer("https://t/token", None, None))
        );
        assert_eq!(
            parse_challenge("Bearer realm = \"https://t\" ,service=reg"),
            Some(bearer("https://t", Some("reg"), None))
        );
    }

    #[test]
    fn basic() {
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Basic"), Some(Challenge::Basic));
    }

    #[test]
    fn rejects_malformed_and_unknown() {
        for h in [
            "",
            "Negotiate abc",
            "Bearer service=\"x\"",
            "Bearer realm=\"\"",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"x\" junk",
            "Bearer =x",
            "Bearer realm",
            "Bearer realm=\"a\\",
        ] {
            assert_eq!(parse_challenge(h), None, "{h:?}");
        }
    }
}
