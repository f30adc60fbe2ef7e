//! W3C Trace Context (https://www.w3.org/TR/trace-context/): `traceparent` read and written.
//!
//! A valid `traceparent` is continued (its trace id, its sampled flag, its span as our
//! span's parent) and its `tracestate` passed on untouched. Anything else (absent,
//! malformed, version `ff`, zero ids, several `traceparent` lines) starts a new trace, whose
//! sampling is decided by the trace id, and the `tracestate` that came with it is dropped,
//! as the specification asks. Either way the backend receives a `traceparent` naming
//! Gatehouse's span, so its own spans hang below the proxy's.

use std::time::{SystemTime, UNIX_EPOCH};

/// `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;

/// Which of the requests without a decision are sampled: those whose trace id's last eight
/// bytes, as a number, are below a threshold (as OpenTelemetry's TraceIdRatioBased).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Sampled when below; `None`: all of them.
    below: Option<u64>,
}

impl Sampler {
    pub fn percent(p: u32) -> Sampler {
        if p >= 100 {
            return Sampler { below: None };
        }
        let below = (u128::from(p) * (1u128 << 64) / 100) as u64;
        Sampler { below: Some(below) }
    }

    fn samples(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        self.below.is_none_or(|b| u64::from_be_bytes(low) < b)
    }
}

/// The trace a request belongs to and Gatehouse's span of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// Gatehouse's span.
    pub span_id: [u8; 8],
    /// The client's span, when it sent a valid `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    /// When the request started, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
}

impl TraceContext {
    /// The context of a request whose `traceparent` lines are `sent` (every one of them).
    pub fn start<'a>(sent: impl IntoIterator<Item = &'a [u8]>, sampler: &Sampler) -> Self {
        let mut lines = sent.into_iter();
        let parent = match (lines.next(), lines.next()) {
            (Some(one), None) => parse_traceparent(one),
            _ => None,
        };
        let span_id = nonzero_id::<8>();
        let start_unix_nanos = unix_nanos();
        match parent {
            Some(p) => TraceContext {
                trace_id: p.trace_id,
                span_id,
                parent: Some(p.span_id),
                sampled: p.sampled,
                start_unix_nanos,
            },
            None => {
                let trace_id = nonzero_id::<16>();
                TraceContext {
                    sampled: sampler.samples(&trace_id),
                    trace_id,
                    span_id,
                    parent: None,
                    start_unix_nanos,
                }
            }
        }
    }

    /// Whether the request's `tracestate` goes on with it: only when its trace does.
    pub fn keeps_tracestate(&self) -> bool {
        self.parent.is_some()
    }

    /// The `traceparent` for the backend: this trace, Gatehouse's span, the decision.
    pub fn traceparent(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [0u8; TRACEPARENT_LEN];
        out[..3].copy_from_slice(b"00-");
        hex_into(&mut out[3..35], &self.trace_id);
        out[35] = b'-';
        hex_into(&mut out[36..52], &self.span_id);
        out[52] = b'-';
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        out
    }
}

/// A valid `traceparent`'s fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Parses a `traceparent` value by the specification's rules: lower-case hex, version 00
/// exactly 55 bytes, a later version at least 55 with a `-` after them, never version ff,
/// no all-zero id.
pub fn parse_traceparent(v: &[u8]) -> Option<Parent> {
    // Surrounding spaces are optional whitespace of the header field, not of the value.
    let v = v.trim_ascii();
    if v.len() < TRACEPARENT_LEN || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_byte(&v[0..2])?;
    match version {
        0xff => return None,
        0 if v.len() != TRACEPARENT_LEN => return None,
        0 => {}
        _ if v.len() > TRACEPARENT_LEN && v[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
    }
    for (i, b) in span_id.iter_mut().enumerate() {
        *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
    }
    let flags = hex_byte(&v[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Two lower-case hex digits.
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
}

/// Lower-case hex of `bytes` (ids in tests and logs).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

fn nonzero_id<const N: usize>() -> [u8; N] {
    loop {
        let id: [u8; N] = rand::random();
        if id != [0; N] {
            return id;
        }
    }
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_our_span_as_the_parent() {
        let ctx = TraceContext::start([SENT], &Sampler::percent(0));
        assert_eq!(hex(&ctx.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.parent.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(ctx.sampled, "the client's decision, whatever the rate");
        assert!(ctx.keeps_tracestate());
        let out = ctx.traceparent();
        let out = std::str::from_utf8(&out).expect("ascii");
        assert_eq!(
            out,
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                hex(&ctx.span_id)
            )
        );
        assert_ne!(ctx.span_id, [0; 8]);
        assert_eq!(
            parse_traceparent(out.as_bytes()).map(|p| p.span_id),
            Some(ctx.span_id)
        );

        let unsampled = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let ctx = TraceContext::start([&unsampled[..]], &Sampler::percent(100));
        assert!(!ctx.sampled, "the client's decision, whatever the rate");
        assert!(ctx.traceparent().ends_with(b"-00"));
    }

    #[test]
    fn anything_else_starts_a_new_trace_and_drops_tracestate() {
        let bad: [&[u8]; 9] = [
            b"",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for b in bad {
            assert_eq!(parse_traceparent(b), None, "{}", String::from_utf8_lossy(b));
            let ctx = TraceContext::start([b], &Sampler::percent(100));
            assert_eq!(ctx.parent, None);
            assert!(!ctx.keeps_tracestate());
            assert_ne!(hex(&ctx.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        }
        // Two lines: invalid, even when each is valid.
        let ctx = TraceContext::start([SENT, SENT], &Sampler::percent(100));
        assert_eq!(ctx.parent, None);
        // A later version may carry more fields after a dash.
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(parse_traceparent(later).is_some());
    }

    #[test]
    fn the_rate_samples_that_share_of_new_traces() {
        let count = |p: u32| {
            (0..20_000)
                .filter(|_| TraceContext::start(None::<&[u8]>, &Sampler::percent(p)).sampled)
                .count()
        };
        assert_eq!(count(0), 0);
        assert_eq!(count(100), 20_000);
        let ten = count(10);
        assert!((1_600..2_400).contains(&ten), "10 % of 20,000: {ten}");
    }
}
