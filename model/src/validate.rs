//! Validation of a model `Config`: what the data plane refuses (NACKs) and the operator
//! checks before it publishes. Both sides share these functions so they agree exactly.

use crate::ir::{BackendTarget, Config, Filter, PathMatch, PathModifier, StringMatch};
use std::collections::HashSet;

/// Regexes in routes must match the whole path or value. Size limits keep a hostile pattern
/// from costing the data plane memory.
pub fn anchored_regex(pattern: &str) -> Result<regex::Regex, String> {
    // Check the user's own text first, so errors point into what they wrote.
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| one_line(&e))?;
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| one_line(&e))
}

fn one_line(e: &regex::Error) -> String {
    // regex's messages draw the pattern over several lines; keep the last one, the reason.
    e.to_string()
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Problems that make a config unservable, each naming the resource and field.
pub fn validate(config: &Config) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let listeners: HashSet<&str> = config.listeners.iter().map(|l| l.key.as_str()).collect();
    let certificates: HashSet<&str> = config.certificates.iter().map(|c| c.key.as_str()).collect();
    let clusters: HashSet<&str> = config.clusters.iter().map(|c| c.key.as_str()).collect();

    for l in &config.listeners {
        for c in &l.certificates {
            if !certificates.contains(c.certificate.as_str()) {
                errors.push(format!(
                    "Listener {}: certificates: unknown Certificate {:?}",
                    l.key, c.certificate
                ));
            }
        }
    }
    for t in &config.route_tables {
        if !listeners.contains(t.listener.as_str()) {
            errors.push(format!("RouteTable {}: unknown listener", t.listener));
        }
        for vh in &t.virtual_hosts {
            for (i, route) in vh.routes.iter().enumerate() {
                let at = format!(
                    "RouteTable {} host {} route {i} ({} {}/{} rule {})",
                    t.listener,
                    vh.hostname,
                    route.source.kind,
                    route.source.namespace,
                    route.source.name,
                    route.source.rule
                );
                if let PathMatch::Regex(p) = &route.matcher.path
                    && let Err(e) = anchored_regex(p)
                {
                    errors.push(format!("{at}: match.path: invalid regex {p:?}: {e}"));
                }
                let values = route.matcher.headers.iter().chain(&route.matcher.query);
                for v in values {
                    if let StringMatch::Regex(p) = &v.value
                        && let Err(e) = anchored_regex(p)
                    {
                        errors.push(format!(
                            "{at}: match {:?}: invalid regex {p:?}: {e}",
                            v.name
                        ));
                    }
                }
                let prefix_rewrites = route.filters.iter().any(|f| {
                    matches!(
                        f,
                        Filter::Rewrite(crate::ir::Rewrite {
                            path: Some(PathModifier::ReplacePrefixMatch(_)),
                            ..
                        }) | Filter::Redirect(crate::ir::Redirect {
                            path: Some(PathModifier::ReplacePrefixMatch(_)),
                            ..
                        })
                    )
                });
                if prefix_rewrites && !matches!(route.matcher.path, PathMatch::Prefix(_)) {
                    errors.push(format!(
                        "{at}: filters: ReplacePrefixMatch needs a PathPrefix match"
                    ));
                }
                for b in &route.backends {
                    if let BackendTarget::Cluster(key) = &b.target
                        && !clusters.contains(key.as_str())
                    {
                        errors.push(format!("{at}: backends: unknown Cluster {key:?}"));
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_regex_matches_whole_string_only() {
        let re = anchored_regex("/v[0-9]+").unwrap();
        assert!(re.is_match("/v12"));
        assert!(!re.is_match("/v12/x"));
        assert!(!re.is_match("x/v1"));
        assert!(anchored_regex("(").is_err());
    }
}
