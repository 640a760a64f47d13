//! A one-request HTTP receiver for the tests of the webhook event sink (the unit tests here
//! and the integration tests, which include this file from tests/common.rs).

/// One HTTP request read from `listener`: (request line, body); answers `status` (such as
/// "204 No Content") with no body.
pub fn accept_post(listener: &std::net::TcpListener, status: &str) -> (String, String) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let (stream, _) = listener.accept().unwrap();
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let mut len = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    write!(&stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    (first, String::from_utf8(body).unwrap())
}
