//! A webhook receiver for `scripts/bench` (WEBHOOKS=1, scripts/bench.d/webhooks.sh): answers
//! every request `200 ok` at once, on HTTP/1.1 keep-alive connections, and counts what it got.
//! Small and fast so that it is never the bottleneck of a fan-out run; it verifies nothing (the
//! tests verify every delivery with the reference library).
//!
//!   cargo run --release --example webhook_receiver -- 127.0.0.1:0
//!
//! Prints its address on the first line; then, once a second while requests arrive, the
//! total so far. Loopback only: it refuses any other address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .expect("an address such as 127.0.0.1:0");
    assert!(addr.ip().is_loopback(), "loopback addresses only");
    let listener = TcpListener::bind(addr).await.expect("bind");
    println!("{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let counting = count.clone();
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = counting.load(Ordering::Relaxed);
            if now != last {
                println!("{now}");
                last = now;
            }
        }
    });
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, count.clone()));
    }
}

/// Answers the requests of one connection until it closes.
async fn serve(mut stream: TcpStream, count: Arc<AtomicU64>) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // A whole request: its head, then content-length bytes of body.
        let (head_end, length) = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break (end + 4, content_length(&buf[..end]));
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        count.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(ANSWER).await.is_err() {
            return;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}
