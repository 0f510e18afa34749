//! A deliberately small HTTP/1.1 server side: read a request head, route it, write a JSON reply.
//!
//! The simulator only serves `GET` requests with query strings and no bodies, so a hand-written
//! parser is shorter and clearer than a framework. Connections are kept alive until the client
//! closes them or sends `Connection: close`.

use std::fmt::Write as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path without the query, e.g. `/api/v3/historicalTrades`.
    pub path: String,
    /// The raw query string (after `?`), e.g. `symbol=BTCUSDT&limit=5`.
    pub query: String,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a WebSocket upgrade request.
    pub fn is_websocket(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    /// The body length the client announced (bodies are read and ignored).
    fn content_length(&self) -> usize {
        self.header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The first value of `name` in a query string, percent-decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` (space); invalid escapes are kept as they are.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A reply: status, extra headers, JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers besides Content-Type, Content-Length and Connection.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
}

impl Response {
    /// `200 OK` with a JSON body.
    pub fn ok(body: impl Into<String>) -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Any status with a JSON body.
    pub fn status(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn encode(&self, close: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            418 => "I'm a teapot",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        let _ = write!(
            head,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            self.body.len()
        );
        for (k, v) in &self.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

/// Why a request head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// The peer closed the connection before sending a complete head (normal between requests).
    #[error("connection closed")]
    Closed,
    /// The head is larger than [`MAX_HEAD`].
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// The head is not HTTP/1.x.
    #[error("malformed request head: {0}")]
    Malformed(String),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads until a complete request head is in `buf` (which may already hold bytes) and parses it.
/// Returns the request and the head's length in `buf`; bytes after it belong to the next request
/// (or to the WebSocket).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(Request, usize), HeadError> {
    loop {
        if let Some(end) = find_head_end(buf) {
            let request = parse_head(&buf[..end])?;
            return Ok((request, end));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a request head (request line and headers, ending with an empty line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(format!(
            "request line {request_line:?}"
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed(format!("version {version:?}")));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    })
}

/// Serves plain HTTP requests on `stream` until the client closes: `buf` holds bytes already
/// read (starting with the first request's head); `route` answers each request.
pub(crate) async fn serve<S, F>(
    mut stream: S,
    mut buf: Vec<u8>,
    mut route: F,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(&Request) -> Response,
{
    loop {
        let (request, head_len) = match read_head(&mut stream, &mut buf).await {
            Ok(r) => r,
            Err(HeadError::Closed) => return Ok(()),
            Err(HeadError::Io(e)) => return Err(e),
            Err(e @ (HeadError::TooLarge | HeadError::Malformed(_))) => {
                let status = if matches!(e, HeadError::TooLarge) {
                    431
                } else {
                    400
                };
                let body = serde_json::json!({ "error": e.to_string() }).to_string();
                stream
                    .write_all(&Response::status(status, body).encode(true))
                    .await?;
                return Ok(());
            }
        };
        // Skip a body, if any (only GET is served, but be tolerant).
        let body_len = request.content_length();
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_len + body_len);
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let response = if request.method == "GET" {
            route(&request)
        } else {
            Response::status(405, r#"{"error":"only GET is served by exchange-sim"}"#)
        };
        metrics::counter!("sim_rest_requests_total", "status" => response.status.to_string())
            .increment(1);
        stream.write_all(&response.encode(close)).await?;
        stream.flush().await?;
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_into_path_query_and_headers() {
        let head = b"GET /api/v3/historicalTrades?symbol=BTCUSDT&fromId=5 HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\r\n";
        let req = parse_head(head).unwrap();
        assert_eq!(req.path, "/api/v3/historicalTrades");
        assert_eq!(req.param("symbol").as_deref(), Some("BTCUSDT"));
        assert_eq!(req.param("fromId").as_deref(), Some("5"));
        assert_eq!(req.param("limit"), None);
        assert!(req.is_websocket());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("BTC%2FUSDT"), "BTC/USDT");
        assert_eq!(percent_decode("%5B%22A%22%5D+x"), "[\"A\"] x");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn responses_carry_length_and_headers() {
        let bytes = Response::ok("[]")
            .with_header("CB-AFTER", "7")
            .encode(false);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("CB-AFTER: 7\r\n"));
        assert!(text.ends_with("\r\n\r\n[]"));
    }
}
