//! HTTP/1.1 written by hand on a fresh connection: for requests a client library will not send
//! (broken framing, huge heads) and bodies with no Content-Length.

use std::io::{Read, Write};
use std::time::Duration;

use super::tokens::{token, ADMIN, ORG};

/// Sends `head` and `body` on a fresh connection and reads until the server closes it (or the
/// bound `timeout`: not an assertion on timing, a guard so that a server that hangs fails the
/// test instead of hanging it). The server may answer and stop reading at any point, so write
/// errors are ignored. Blocking.
pub fn exchange(port: u16, head: &str, body: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(timeout))
        .expect("set a read timeout");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

/// `body` in the chunked transfer coding, in chunks of `size` bytes, with the last chunk.
pub fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The status of an HTTP/1.1 answer, if it is one.
pub fn status_of(answer: &str) -> Option<u16> {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok())
}

/// An answer taken apart.
pub struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// POSTs `body` as a create with `Transfer-Encoding: chunked` (no Content-Length, so a size
/// limit must be enforced while reading), as `ORG` admin; returns the answer.
pub async fn post_chunked(port: u16, body: String) -> RawAnswer {
    let head = format!(
        "POST /v1/customers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        token(ORG, "test", ADMIN)
    );
    let answer = tokio::task::spawn_blocking(move || {
        exchange(
            port,
            &head,
            &chunked(body.as_bytes(), 4096),
            Duration::from_secs(20),
        )
    })
    .await
    .expect("the raw request ran");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    let status = status_of(head).unwrap_or_else(|| panic!("a status line: {head:?}"));
    RawAnswer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}
