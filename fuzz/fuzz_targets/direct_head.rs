//! The direct path's request head (`framing`): where a head ends is found the same however
//! it arrives (read by read, as `serve` scans it); a head the direct path takes is written
//! for the backend as a head that parses to the same request: same method, target and
//! version, the client's headers in order less those never passed on, one Host, no body
//! framing but a zero Content-Length, and Gatehouse's forwarded headers last.

#![no_main]

use gatehouse_dataplane::http::direct::framing::{
    MAX_HEADERS, eligible, head_end, head_end_from, write_request,
};
use gatehouse_dataplane::http::forwarding::{Forwarded, SET_HEADERS, dropped_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let whole = head_end(data);
    // Read by read, `step` bytes at a time, each scan going on from where the last stopped.
    let step = usize::from(step % 32) + 1;
    let mut scanned = 0;
    let mut read = 0;
    let mut found = None;
    while read < data.len() {
        read = (read + step).min(data.len());
        if let Some(n) = head_end_from(&data[..read], scanned) {
            found = Some(n);
            break;
        }
        scanned = read.saturating_sub(2);
    }
    assert_eq!(found, whole, "the end depends on how the head arrived");

    let Some(n) = whole else {
        return;
    };
    let raw = &data[..n];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(m)) if m == n => {}
        _ => return,
    }
    let Some(head) = eligible(&req) else {
        return;
    };
    for keep_underscores in [false, true] {
        let forwarded = Forwarded {
            peer: [192, 0, 2, 1].into(),
            client: [203, 0, 113, 9].into(),
            chain: head.forwarded_for,
            tls: keep_underscores,
            host: head.raw_host,
            port: 8080,
            texts: None,
            request_id: None,
            trace: None,
        };
        let mut out = Vec::new();
        write_request(&mut out, &req, &head, &forwarded, keep_underscores);
        let mut again_headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
        let mut again = httparse::Request::new(&mut again_headers);
        let parsed = again.parse(&out);
        assert!(
            matches!(parsed, Ok(httparse::Status::Complete(m)) if m == out.len()),
            "the rewritten head does not parse whole: {parsed:?}\n{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(again.method, req.method);
        assert_eq!(again.path, req.path);
        assert_eq!(again.version, Some(1));
        let kept: Vec<(&str, &[u8])> = req
            .headers
            .iter()
            .filter(|h| {
                let name = h.name.as_bytes();
                !name.eq_ignore_ascii_case(b"connection")
                    && !name.eq_ignore_ascii_case(b"keep-alive")
                    && !dropped_header(name, keep_underscores)
            })
            .map(|h| (h.name, h.value))
            .collect();
        let written: Vec<(&str, &[u8])> = again.headers.iter().map(|h| (h.name, h.value)).collect();
        assert!(written.len() >= kept.len() + SET_HEADERS.len());
        assert_eq!(
            &written[..kept.len()],
            &kept[..],
            "the client's headers changed"
        );
        let ours: Vec<String> = written[kept.len()..]
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        assert_eq!(ours, SET_HEADERS, "Gatehouse's headers");
        let count = |name: &str| {
            written
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .count()
        };
        assert_eq!(count("host"), 1, "one Host");
        assert_eq!(count("transfer-encoding"), 0);
        for (n, v) in &written {
            if n.eq_ignore_ascii_case("content-length") {
                assert_eq!(*v, b"0", "a body on the direct path");
            }
        }
    }
});
