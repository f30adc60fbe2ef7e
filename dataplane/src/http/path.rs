//! One path normalisation, before any route is matched, on both request paths: the path a
//! request is routed on is the path the backend gets. Without it, `/x/../admin`,
//! `/%61dmin` and `//admin` reach a backend through the `/` route while `/admin` is
//! protected by another (an access list, auth, a rate limit): the backend resolves them to
//! `/admin` after the proxy decided.
//!
//! What is done, in order (nginx decodes, merges slashes and resolves dot segments before
//! it matches a location; Envoy's `normalize_path` and `merge_slashes` do the same):
//! 1. percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other
//!    percent-encodings kept with upper-case hex (RFC 3986 6.2.2);
//! 2. slashes are merged (`//a` is `/a`);
//! 3. dot segments are removed (RFC 3986 5.2.4: `/a/./b/../c` is `/a/c`).
//!
//! Refused with 400, as nothing safe can be forwarded: an encoded slash or backslash
//! (`%2F`, `%5C`: a backend that decodes them would see separators the proxy did not;
//! Envoy's `path_with_escaped_slashes_action: REJECT_REQUEST`), a raw backslash (a
//! separator on some backends), an encoded NUL (`%00`, as nginx), a malformed
//! percent-encoding, a `..` that would climb above the root (nginx answers 400 too), and
//! a dot segment with parameters (`/..;/admin`, `/.;x/`): Tomcat and Jetty drop what
//! follows `;` and then resolve the `..`, a known way past proxies that do not.

use std::borrow::Cow;

/// Why a path cannot be normalised (the request is answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%2F`, `%5C` or a raw `\`.
    Separator,
    /// `%00`.
    Nul,
    /// `%` not followed by two hex digits.
    Encoding,
    /// A `..` above the root.
    AboveRoot,
    /// Not an origin-form path (not starting with `/`).
    NotAbsolute,
    /// `..;` or `.;`: a dot segment with path parameters.
    DotParameters,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::Separator => "an encoded slash or a backslash in the path",
            PathError::Nul => "an encoded NUL in the path",
            PathError::Encoding => "a malformed percent-encoding in the path",
            PathError::AboveRoot => "a path climbing above the root",
            PathError::NotAbsolute => "a path not starting with /",
            PathError::DotParameters => "a dot segment with parameters (..;) in the path",
        })
    }
}

/// Whether a path is already what `normalize` makes of it: no percent-encoding, no
/// backslash, no empty or dot segment. One pass over the bytes, no allocation: the common
/// request's path is normal.
pub fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    // One look at each byte; a slash looks at what follows it only when that is a slash
    // or a dot (the rare case, decided by `segment_is_normal`).
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' | b'\\' => return false,
            b'/' => match b.get(i + 1) {
                Some(b'/') => return false,
                Some(b'.') if !segment_is_normal(&b[i + 1..]) => return false,
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    true
}

/// Whether a segment starting with a dot (`rest`: from it to the path's end) is a name:
/// not `.` or `..`, nor either with parameters.
fn segment_is_normal(rest: &[u8]) -> bool {
    let end = rest.iter().position(|c| *c == b'/').unwrap_or(rest.len());
    let segment = &rest[..end];
    !(segment == b"." || segment == b".." || dot_parameters(segment))
}

/// The path requests are matched on and forwarded with (borrowed when already normal).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    remove_dot_segments(&decoded, true).map(Cow::Owned)
}

/// A rewritten path (a ReplacePrefixMatch or a rewrite-target template applied to a
/// normal path) without dot segments or doubled slashes; a `..` above the root stays at
/// the root, so a rewrite never leaves its prefix's tree.
pub fn tidy_rewritten(path: &str) -> Cow<'_, str> {
    if is_normal(path) || !path.starts_with('/') {
        return Cow::Borrowed(path);
    }
    match remove_dot_segments(path, false) {
        Ok(p) => Cow::Owned(p),
        Err(_) => Cow::Borrowed("/"),
    }
}

/// Step 1: unreserved characters decoded, other escapes kept (upper-case hex); separators,
/// NUL and malformed escapes refused.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => return Err(PathError::Separator),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::Encoding);
                };
                let v = (h * 16 + l) as u8;
                match v {
                    0 => return Err(PathError::Nul),
                    b'/' | b'\\' => return Err(PathError::Separator),
                    c if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => out.push(c as char),
                    _ => {
                        out.push('%');
                        out.push(to_hex(v >> 4));
                        out.push(to_hex(v & 0xf));
                    }
                }
                i += 3;
                continue;
            }
            _ => {
                // Copy the run up to the next escape or backslash in one go (UTF-8 intact).
                let end = b[i..]
                    .iter()
                    .position(|c| *c == b'%' || *c == b'\\')
                    .map_or(b.len(), |n| i + n);
                out.push_str(&path[i..end]);
                i = end;
                continue;
            }
        }
    }
    Ok(out)
}

/// A segment that is `.` or `..` before its first `;` (path parameters).
fn dot_parameters(segment: &[u8]) -> bool {
    segment
        .iter()
        .position(|c| *c == b';')
        .is_some_and(|i| matches!(&segment[..i], b"." | b".."))
}

fn to_hex(n: u8) -> char {
    char::from_digit(u32::from(n), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

/// Steps 2 and 3: slashes merged, dot segments removed. `strict`: a `..` above the root is
/// an error; otherwise it stays at the root.
fn remove_dot_segments(path: &str, strict: bool) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for segment in path.split('/').skip(1) {
        trailing = false;
        match segment {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                if segments.pop().is_none() && strict {
                    return Err(PathError::AboveRoot);
                }
                trailing = true;
            }
            s if dot_parameters(s.as_bytes()) => {
                // A backend would resolve it as `..` (or `.`): refused, or, in a rewrite,
                // resolved here the way it would be there.
                if strict {
                    return Err(PathError::DotParameters);
                }
                if s.starts_with("..") {
                    segments.pop();
                }
                trailing = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a", "/a/b/", "/.well-known/acme", "/a.b/c..d"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_slashes_and_unreserved_escapes() {
        assert_eq!(n("/x/../admin").unwrap(), "/admin");
        assert_eq!(n("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(n("//admin").unwrap(), "/admin");
        assert_eq!(n("/admin//x///").unwrap(), "/admin/x/");
        assert_eq!(n("/%61dmin").unwrap(), "/admin");
        assert_eq!(n("/%2e%2e/x").unwrap_err(), PathError::AboveRoot);
        assert_eq!(n("/a/%2E%2E/admin").unwrap(), "/admin");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(
            n("/caf%c3%a9").unwrap(),
            "/caf%C3%A9",
            "other escapes kept, upper-case"
        );
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
    }

    #[test]
    fn what_cannot_be_normalised_is_refused() {
        assert_eq!(n("/x%2F..%2Fadmin").unwrap_err(), PathError::Separator);
        assert_eq!(n("/x%2f").unwrap_err(), PathError::Separator);
        assert_eq!(n("/x%5c").unwrap_err(), PathError::Separator);
        assert_eq!(n("/x\\..\\admin").unwrap_err(), PathError::Separator);
        assert_eq!(n("/x%00").unwrap_err(), PathError::Nul);
        assert_eq!(n("/x%zz").unwrap_err(), PathError::Encoding);
        assert_eq!(n("/x%4").unwrap_err(), PathError::Encoding);
        assert_eq!(n("/../admin").unwrap_err(), PathError::AboveRoot);
        assert_eq!(n("admin").unwrap_err(), PathError::NotAbsolute);
        assert_eq!(n("/a/..;/admin").unwrap_err(), PathError::DotParameters);
        assert_eq!(n("/a/.;x/admin").unwrap_err(), PathError::DotParameters);
        assert_eq!(n("/a/%2e%2e;/admin").unwrap_err(), PathError::DotParameters);
        // Parameters on other segments are a name like any other.
        assert_eq!(n("/a;v=1/b").unwrap(), "/a;v=1/b");
        assert_eq!(n("/a/...;x").unwrap(), "/a/...;x");
    }

    /// Normalising twice changes nothing, and a normal result never climbs out of `/`.
    #[test]
    fn idempotent() {
        for p in ["/x/../admin", "//a//b/./c/..", "/%7euser/%41", "/a/%2e/b"] {
            let once = n(p).unwrap();
            assert!(is_normal(&once), "{p} -> {once}");
            assert_eq!(n(&once).unwrap(), once);
        }
    }

    #[test]
    fn rewrites_stay_under_the_root() {
        assert_eq!(tidy_rewritten("/v1/./x"), "/v1/x");
        assert_eq!(tidy_rewritten("/v1/../../etc"), "/etc");
        assert_eq!(tidy_rewritten("/v1//x"), "/v1/x");
        assert_eq!(tidy_rewritten("/v1/x"), "/v1/x");
        assert_eq!(tidy_rewritten("/v1/x/..;/y"), "/v1/y");
    }
}
