//! The PROXY protocol (v1 text, v2 binary; HAProxy's specification), read off the start of
//! a connection when the port expects it: the load balancer in front says whose the
//! connection is. Parsed by the `ppp` crate; read here exactly to the header's end, so the
//! bytes after it (a TLS ClientHello, an HTTP request) stay in the socket.
//!
//! A connection without a valid header on such a port is closed: a client reaching the
//! port directly must not be able to claim any address.

use std::net::{IpAddr, SocketAddr};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// The longest v2 header accepted (TLVs included).
const V2_MAX: usize = 16 + 1024;

/// Reads the header: the source address it gives, or None for a LOCAL or UNKNOWN one (the
/// load balancer's own health check: the socket's peer stands).
pub async fn read(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, String> {
    let mut header = vec![0u8; 12];
    tcp.read_exact(&mut header)
        .await
        .map_err(|e| format!("PROXY header: {e}"))?;
    if header.as_slice() == V2_SIGNATURE {
        let mut fixed = [0u8; 4];
        tcp.read_exact(&mut fixed)
            .await
            .map_err(|e| format!("PROXY v2 header: {e}"))?;
        header.extend_from_slice(&fixed);
        let len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
        if 16 + len > V2_MAX {
            return Err(format!("PROXY v2 header of {} bytes", 16 + len));
        }
        let start = header.len();
        header.resize(start + len, 0);
        tcp.read_exact(&mut header[start..])
            .await
            .map_err(|e| format!("PROXY v2 header: {e}"))?;
        return match ppp::v2::Header::try_from(header.as_slice()) {
            Ok(h) => Ok(match h.addresses {
                ppp::v2::Addresses::IPv4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                ppp::v2::Addresses::IPv6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            }),
            Err(e) => Err(format!("PROXY v2 header: {e}")),
        };
    }
    if !header.starts_with(b"PROXY ") {
        return Err("no PROXY header".into());
    }
    // v1: one line; read a byte at a time so nothing after it is taken.
    while !header.ends_with(b"\r\n") {
        if header.len() >= V1_MAX {
            return Err("PROXY v1 header too long".into());
        }
        let b = tcp
            .read_u8()
            .await
            .map_err(|e| format!("PROXY v1 header: {e}"))?;
        header.push(b);
    }
    match ppp::v1::Header::try_from(header.as_slice()) {
        Ok(h) => Ok(match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        }),
        Err(e) => Err(format!("PROXY v1 header: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Sends `bytes` to a fresh connection and reads a header off it, and then what follows.
    async fn through(bytes: &[u8]) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut s, _) = l.accept().await.unwrap();
        c.write_all(bytes).await.unwrap();
        c.shutdown().await.unwrap();
        let got = read(&mut s).await;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        (got, rest)
    }

    #[tokio::test]
    async fn v1_and_v2_give_the_source_and_leave_the_rest() {
        let (got, rest) =
            through(b"PROXY TCP4 203.0.113.9 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(got.unwrap(), Some("203.0.113.9:51000".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12]); // PROXY, TCP over IPv4, 12 bytes
        v2.extend_from_slice(&[198, 51, 100, 7, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB]);
        v2.extend_from_slice(b"\x16\x03\x01");
        let (got, rest) = through(&v2).await;
        assert_eq!(got.unwrap(), Some("198.51.100.7:50000".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");

        let (got, _) = through(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(got.unwrap(), None, "the peer stands");
    }

    #[tokio::test]
    async fn a_connection_without_a_header_is_refused() {
        assert!(
            through(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .0
                .is_err()
        );
        assert!(through(b"PROXY TCP4 nonsense\r\n").await.0.is_err());
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(through(long.as_bytes()).await.0.is_err());
    }
}
