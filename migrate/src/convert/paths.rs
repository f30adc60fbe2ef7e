//! One Ingress path as HTTPRoute rules: its match (nginx's regex mode or the path type),
//! its backend, the fixed redirect every path answers with, and the rules a canary Ingress
//! adds to it (header, cookie, then weight, nginx's order).

use super::objects::{self, PathKind};
use super::{Converter, Severity, backend_ref};
use gatehouse_translate::gwapi::httproutes::{
    HttpRouteRules, HttpRouteRulesBackendRefs, HttpRouteRulesFilters, HttpRouteRulesMatchesHeaders,
};
use gatehouse_translate::httproute::normalise_prefix;
use gatehouse_translate::store::ObjectKey;
use k8s_openapi::api::networking::v1::HTTPIngressPath;

impl Converter<'_, '_> {
    /// The HTTPRoute rules of one Ingress path: canary variants first, then the path's own.
    pub(super) fn path_rules(
        &mut self,
        gw: &ObjectKey,
        host: &str,
        regex_mode: bool,
        p: &HTTPIngressPath,
    ) -> Option<Vec<HttpRouteRules>> {
        let ns = self.key.namespace.clone();
        let value = p.path.clone().unwrap_or_else(|| "/".into());
        if !value.starts_with('/') {
            self.note(
                Severity::NotConverted,
                format!("path {value:?} does not start with / (not served either)"),
            );
            return None;
        }
        let (kind, matched) = if regex_mode {
            (PathKind::Regex, format!("(?i){value}.*"))
        } else {
            match p.path_type.as_str() {
                "Exact" => (PathKind::Exact, value.clone()),
                "Prefix" => (PathKind::Prefix, normalise_prefix(&value)),
                "ImplementationSpecific" => {
                    self.note(Severity::Kept, format!("path {value:?} ImplementationSpecific: Gatehouse (like nginx without regex) matches it as a prefix, so it becomes PathPrefix"));
                    (PathKind::Prefix, normalise_prefix(&value))
                }
                other => {
                    self.note(
                        Severity::NotConverted,
                        format!("path {value:?}: pathType {other:?} is not served either"),
                    );
                    return None;
                }
            }
        };
        let backend = match backend_ref(self.store, &ns, &p.backend) {
            Ok(b) => b,
            Err(e) => {
                self.note(Severity::NotConverted, format!("path {value:?}: {e}"));
                return None;
            }
        };
        let fixed: Vec<HttpRouteRulesFilters> = self.fixed_redirect().into_iter().collect();
        let rule = |header: Option<HttpRouteRulesMatchesHeaders>,
                    backends: Vec<HttpRouteRulesBackendRefs>| {
            objects::rule(
                objects::path_match(&kind, &matched, header),
                fixed.clone(),
                backends,
            )
        };
        let canary_key = (
            gw.clone(),
            host.to_string(),
            value.clone(),
            p.path_type.clone(),
        );
        let Some(canary) = self
            .canaries
            .get(&canary_key)
            .filter(|c| c.ingress != self.key)
        else {
            return Some(vec![rule(None, vec![backend])]);
        };
        let to_canary = match &canary.backend {
            Ok(b) => b.clone(),
            Err(e) => {
                let e = format!("canary Ingress {}: {e}", canary.ingress);
                self.note(Severity::NotConverted, e);
                return None;
            }
        };
        let c = canary.settings.clone();
        let mut rules = Vec::new();
        let exact = |name: &str, v: &str| objects::header(name, v.to_string(), false);
        if let Some(h) = &c.by_header {
            if let Some(v) = &c.by_header_value {
                rules.push(rule(Some(exact(h, v)), vec![to_canary.clone()]));
            } else if let Some(pat) = &c.by_header_pattern {
                let pattern = objects::header(h, format!(".*(?:{pat}).*"), true);
                rules.push(rule(Some(pattern), vec![to_canary.clone()]));
            } else {
                rules.push(rule(Some(exact(h, "always")), vec![to_canary.clone()]));
                rules.push(rule(Some(exact(h, "never")), vec![backend.clone()]));
            }
        }
        if let Some(cookie) = &c.by_cookie {
            let is = |v: &str| {
                let value = format!("(?:.*;\\s*)?{}={v}(?:;.*)?", regex::escape(cookie));
                objects::header("cookie", value, true)
            };
            rules.push(rule(Some(is("always")), vec![to_canary.clone()]));
            rules.push(rule(Some(is("never")), vec![backend.clone()]));
        }
        let total = c.weight_total.max(100);
        let canary_weight = c.weight.min(total);
        let mut weighted = Vec::new();
        if total > canary_weight {
            weighted.push(HttpRouteRulesBackendRefs {
                weight: Some(weight(total - canary_weight)),
                ..backend
            });
        }
        if canary_weight > 0 {
            weighted.push(HttpRouteRulesBackendRefs {
                weight: Some(weight(canary_weight)),
                ..to_canary
            });
        }
        rules.push(rule(None, weighted));
        Some(rules)
    }

    /// permanent-/temporal-redirect as a RequestRedirect (with the policy's dropQuery).
    pub(super) fn fixed_redirect(&mut self) -> Option<HttpRouteRulesFilters> {
        let r = self.o.annotations.ingress.redirect.clone()?;
        let filter = objects::fixed_redirect(&r);
        if filter.is_none() {
            self.note(Severity::NotConverted, format!("redirect to {:?} with code {}: no RequestRedirect says the same (a query in the URL, a code other than 301, 302, 303, 307, 308, or a scheme other than http and https)", r.location, r.status));
        }
        filter
    }
}

/// A canary weight (at most the total, itself bounded by the annotation's u32) as the
/// backendRef's i32.
fn weight(w: u32) -> i32 {
    i32::try_from(w).unwrap_or(i32::MAX)
}
