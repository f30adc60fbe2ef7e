//! Chunked framing on the direct path (`framing::ChunkedEnd`) against a reference decoder
//! written from RFC 9112 7.1: for any body and any way it arrives in pieces, the end is the
//! same; a body the reference takes ends where it says and is not noted malformed; a body
//! ChunkedEnd ends without noting it malformed is one the reference takes, with that end.
//! (Both take a bare LF for CRLF, as httparse does, and read trailer lines and extensions
//! as opaque up to their LF.)

#![no_main]

use gatehouse_dataplane::http::direct::framing::ChunkedEnd;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let mut whole = ChunkedEnd::default();
    let end = whole.feed(body);
    // The same bytes in pieces of `step` bytes.
    let step = usize::from(step % 16) + 1;
    let mut pieces = ChunkedEnd::default();
    let mut seen = 0;
    let mut piecewise = None;
    for piece in body.chunks(step) {
        if let Some(n) = pieces.feed(piece) {
            piecewise = Some(seen + n);
            break;
        }
        seen += piece.len();
    }
    assert_eq!(end, piecewise, "the end depends on how the body arrived");
    assert_eq!(whole.malformed, pieces.malformed);
    match reference(body) {
        Reference::Ends(n) => {
            assert_eq!(end, Some(n), "the reference ends at {n}");
            assert!(!whole.malformed, "well-formed framing noted malformed");
        }
        Reference::Incomplete => {
            if !whole.malformed {
                assert_eq!(end, None, "an end before the reference's");
            }
        }
        Reference::Invalid => {
            assert!(
                end.is_none() || whole.malformed,
                "invalid framing ended at {end:?} without being noted"
            );
        }
    }
});

enum Reference {
    Ends(usize),
    Incomplete,
    Invalid,
}

/// The end of the chunked body at the start of `b`.
fn reference(b: &[u8]) -> Reference {
    let mut i = 0;
    // A line end at `i`: CRLF or LF; its length.
    let line_end = |i: usize| -> Result<usize, Reference> {
        match (b.get(i), b.get(i + 1)) {
            (Some(b'\n'), _) => Ok(1),
            (Some(b'\r'), Some(b'\n')) => Ok(2),
            (None, _) | (Some(b'\r'), None) => Err(Reference::Incomplete),
            _ => Err(Reference::Invalid),
        }
    };
    loop {
        // chunk-size
        let mut size: u64 = 0;
        let start = i;
        while let Some(d) = b.get(i).and_then(|c| (*c as char).to_digit(16)) {
            size = match size
                .checked_mul(16)
                .and_then(|s| s.checked_add(u64::from(d)))
            {
                Some(s) => s,
                None => return Reference::Invalid,
            };
            i += 1;
        }
        if i == b.len() {
            return Reference::Incomplete;
        }
        if i == start {
            return Reference::Invalid;
        }
        // BWS, then chunk-ext: ";" and anything but a line end.
        while matches!(b.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if b.get(i) == Some(&b';') {
            while let Some(c) = b.get(i) {
                if *c == b'\n' || *c == b'\r' {
                    break;
                }
                i += 1;
            }
        }
        match line_end(i) {
            Ok(n) => i += n,
            Err(r) => return r,
        }
        if size == 0 {
            // Trailer lines, then the empty line.
            loop {
                match line_end(i) {
                    Ok(n) => return Reference::Ends(i + n),
                    Err(Reference::Incomplete) => return Reference::Incomplete,
                    Err(_) => {}
                }
                if b[i] == b'\r' {
                    return Reference::Invalid;
                }
                match b[i..].iter().position(|c| *c == b'\n') {
                    Some(n) => i += n + 1,
                    None => return Reference::Incomplete,
                }
            }
        }
        let Some(after) = usize::try_from(size).ok().and_then(|s| i.checked_add(s)) else {
            return Reference::Incomplete;
        };
        if after > b.len() {
            return Reference::Incomplete;
        }
        i = after;
        match line_end(i) {
            Ok(n) => i += n,
            Err(r) => return r,
        }
    }
}
