//! Hostname intersection between a listener and a route (or Ingress rule).

use gatehouse_model::ir::HostMatch;

/// The hostnames under which a route is served on a listener: the intersection of the
/// listener's hostname with each of the route's. Empty when nothing intersects.
pub fn intersect(listener: &HostMatch, route: &[HostMatch]) -> Vec<HostMatch> {
    if route.is_empty() {
        return vec![listener.clone()];
    }
    let mut out: Vec<HostMatch> = route
        .iter()
        .filter_map(|r| intersect_one(listener, r))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn intersect_one(listener: &HostMatch, route: &HostMatch) -> Option<HostMatch> {
    use HostMatch::*;
    match (listener, route) {
        (Any, r) => Some(r.clone()),
        (l, Any) => Some(l.clone()),
        (Exact(l), r) => r.matches(l).then(|| Exact(l.clone())),
        (l, Exact(r)) => l.matches(r).then(|| Exact(r.clone())),
        (Suffix(l), Suffix(r)) => {
            if r.ends_with(l.as_str()) {
                Some(Suffix(r.clone()))
            } else if l.ends_with(r.as_str()) {
                Some(Suffix(l.clone()))
            } else {
                None
            }
        }
        // One label in front of `o` lies inside "any depth in front of `s`" only when `o`
        // itself ends with `s`; otherwise the two sets are disjoint.
        (Suffix(s), OneLabel(o)) | (OneLabel(o), Suffix(s)) => {
            o.ends_with(s.as_str()).then(|| OneLabel(o.clone()))
        }
        (OneLabel(l), OneLabel(r)) => (l == r).then(|| OneLabel(l.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(h: &str) -> HostMatch {
        HostMatch::gateway(h)
    }

    #[test]
    fn gateway_api_intersections() {
        assert_eq!(intersect(&HostMatch::Any, &[]), vec![HostMatch::Any]);
        assert_eq!(
            intersect(&g("*.example.com"), &[]),
            vec![g("*.example.com")]
        );
        assert_eq!(
            intersect(
                &g("*.example.com"),
                &[g("foo.example.com"), g("foo.other.com")]
            ),
            vec![g("foo.example.com")]
        );
        assert_eq!(
            intersect(&g("foo.example.com"), &[g("*.example.com")]),
            vec![g("foo.example.com")]
        );
        assert_eq!(
            intersect(&g("*.example.com"), &[g("*.a.example.com")]),
            vec![g("*.a.example.com")]
        );
        assert_eq!(
            intersect(&g("*.a.example.com"), &[g("*.example.com")]),
            vec![g("*.a.example.com")]
        );
        assert!(intersect(&g("*.example.com"), &[g("*.example.net")]).is_empty());
        assert!(intersect(&g("a.example.com"), &[g("b.example.com")]).is_empty());
    }

    #[test]
    fn ingress_wildcards_stay_one_label() {
        let one = HostMatch::ingress("*.foo.com");
        assert_eq!(
            intersect(&g("*.com"), std::slice::from_ref(&one)),
            vec![one.clone()]
        );
        assert_eq!(
            intersect(&g("a.foo.com"), std::slice::from_ref(&one)),
            vec![g("a.foo.com")]
        );
        assert!(intersect(&g("a.b.foo.com"), std::slice::from_ref(&one)).is_empty());
        assert!(intersect(&g("*.x.foo.com"), std::slice::from_ref(&one)).is_empty());
    }
}
