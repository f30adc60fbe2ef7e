//! Path normalisation (dataplane `http::path`): never panics; normalising a normalised
//! path changes nothing; it starts at the root and holds no dot segment, empty segment,
//! encoded separator or backslash, and is `is_normal` (the fast path that skips the work)
//! unless it keeps a percent-encoding; what `is_normal` passes is tidy the same way; a
//! rewritten path is tidy too.

#![no_main]

use gatehouse_dataplane::http::path::{is_normal, normalize, tidy_rewritten};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if is_normal(text) {
        check_tidy(text, text);
        assert!(!text.contains('%') && !text.contains('\\'), "{text:?}");
    }
    if let Ok(p) = normalize(text) {
        assert!(
            is_normal(&p) || p.contains('%'),
            "{text:?} -> {p:?} is not normal"
        );
        assert_eq!(
            normalize(&p).as_deref(),
            Ok(&*p),
            "{text:?}: not idempotent"
        );
        check_tidy(&p, text);
        for bad in ["%2F", "%2f", "%5C", "%5c", "%00", "\\"] {
            assert!(!p.contains(bad), "{text:?} -> {p:?} holds {bad}");
        }
    }
    if text.starts_with('/') {
        let t = tidy_rewritten(text);
        assert!(t.starts_with('/'), "{text:?} -> {t:?}");
        if !text.contains('%') && !text.contains('\\') {
            check_tidy(&t, text);
            assert_eq!(tidy_rewritten(&t), t, "{text:?}: rewrite not idempotent");
        }
    }
});

/// Starts at the root; no `.`/`..` segment (nor one with parameters), no empty segment but
/// a trailing one.
fn check_tidy(p: &str, from: &str) {
    assert!(p.starts_with('/'), "{from:?} -> {p:?}");
    let segments: Vec<&str> = p.split('/').skip(1).collect();
    for (i, s) in segments.iter().enumerate() {
        let before_params = s.split(';').next().unwrap_or_default();
        assert!(
            before_params != "." && before_params != "..",
            "{from:?} -> {p:?}: dot segment"
        );
        assert!(
            !s.is_empty() || i == segments.len() - 1,
            "{from:?} -> {p:?}: empty segment"
        );
    }
}
