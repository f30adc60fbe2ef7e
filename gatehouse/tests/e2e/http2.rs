//! HTTP/2 client connections at the edge: the Gateway's idle timeout closes one with no
//! stream, and a peer that stops answering PINGs is let go (`dataplane/src/net/h2.rs`).

use super::edge::{PORT, limited};
use http_body_util::{BodyExt, Empty};
use std::net::SocketAddr;
use std::time::Duration;

/// An h2c connection (prior knowledge): the request sender and the connection's future.
async fn h2c(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    hyper::client::conn::http2::Connection<
        hyper_util::rt::TokioIo<tokio::net::TcpStream>,
        Empty<bytes::Bytes>,
        hyper_util::rt::TokioExecutor,
    >,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake")
}

fn get() -> http::Request<Empty<bytes::Bytes>> {
    http::Request::get("http://slow.example.com/")
        .body(Empty::new())
        .expect("request")
}

/// One request on `sender`, its body read, while `conn` is driven: the status.
async fn one_request<C: std::future::Future + Unpin>(
    sender: &mut hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    conn: &mut C,
) -> u16 {
    let exchange = async {
        let resp = sender.send_request(get()).await.expect("h2 answer");
        let status = resp.status().as_u16();
        resp.into_body().collect().await.expect("body");
        status
    };
    tokio::select! {
        status = exchange => status,
        _ = conn => panic!("the connection ended during the request"),
    }
}

/// A connection with no stream is closed at the Gateway's idle timeout (1 s here; it was
/// the process's 75 s for every Gateway), not before.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_at_the_gateways_idle_timeout() {
    let gh = limited("{idleTimeoutSeconds: 1, http2PingIntervalSeconds: 0}").await;
    let (mut sender, conn) = h2c(SocketAddr::new(gh.ip, PORT)).await;
    let mut conn = Box::pin(conn);
    assert_eq!(one_request(&mut sender, &mut conn).await, 200);
    let idle_from = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), &mut conn).await;
    let took = idle_from.elapsed();
    assert!(closed.is_ok(), "still open after 10 s idle");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed {took:?} after its last stream"
    );
}

/// A peer that stops answering PINGs (its connection no longer read: a NAT that dropped
/// it, a phone that left) is closed within the interval and the PING timeout; one that
/// answers stays open.
#[tokio::test]
async fn a_peer_that_answers_no_ping_is_let_go() {
    let gh = limited("{idleTimeoutSeconds: 60, http2PingIntervalSeconds: 1}").await;
    let addr = SocketAddr::new(gh.ip, PORT);
    // Answers PINGs (hyper drives its connection): still serving after 4 s.
    let (mut live, conn) = h2c(addr).await;
    let driven = tokio::spawn(conn);
    // The h2 crate's client moves only when its connection is polled.
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut silent, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut conn = Box::pin(conn);
    let (answer, _) = silent
        .send_request(
            http::Request::get("http://slow.example.com/")
                .body(())
                .expect("request"),
            true,
        )
        .expect("request sent");
    let status = tokio::select! {
        r = answer => r.expect("h2 answer").status(),
        _ = &mut conn => panic!("the connection ended during the request"),
    };
    assert_eq!(status, 200);
    // Not polled for 4 s: the PINGs sent in that time go unanswered.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ended = tokio::time::timeout(Duration::from_millis(500), &mut conn).await;
    assert!(
        ended.is_ok(),
        "a peer that answered no PING is still connected"
    );
    let resp = live
        .send_request(get())
        .await
        .expect("the live connection answers");
    assert_eq!(resp.status(), 200);
    assert!(!driven.is_finished(), "the live connection was closed");
}

/// Streams the edge refuses (here a Host that is not the `:authority`, answered 400 by
/// pingora) are counted per connection: the 32nd closes it, as pingora's own accept loop
/// does, and a good stream before that is served.
#[tokio::test]
async fn a_connection_of_malformed_streams_is_closed_at_32() {
    let gh = limited("{idleTimeoutSeconds: 60, http2PingIntervalSeconds: 0}").await;
    let tcp = tokio::net::TcpStream::connect(SocketAddr::new(gh.ip, PORT))
        .await
        .expect("connect");
    let (sender, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut conn = tokio::spawn(conn);
    let send = |sender: h2::client::SendRequest<bytes::Bytes>, host: &'static str| async move {
        let request = http::Request::get("http://slow.example.com/")
            .header("host", host)
            .body(())
            .expect("request");
        let mut sender = sender.ready().await.ok()?;
        let (answer, _) = sender.send_request(request, true).ok()?;
        answer.await.ok().map(|r| r.status().as_u16())
    };
    for n in 1..32 {
        assert_eq!(
            send(sender.clone(), "other.example.com").await,
            Some(400),
            "malformed stream {n}"
        );
    }
    assert_eq!(send(sender.clone(), "slow.example.com").await, Some(200));
    assert!(
        !conn.is_finished(),
        "closed before the 32nd malformed stream"
    );
    let _ = send(sender.clone(), "other.example.com").await;
    let closed = tokio::time::timeout(Duration::from_secs(5), &mut conn).await;
    assert!(closed.is_ok(), "still open after 32 malformed streams");
}
