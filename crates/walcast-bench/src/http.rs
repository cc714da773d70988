//! A minimal HTTP/1.1 GET, enough for `/readyz` and `/metrics`, and a Prometheus text parser.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on `addr`; returns the status code and the body.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("GET {path} on {addr}: no answer within {timeout:?}"))??;
    parse_response(&raw).with_context(|| format!("GET {path} on {addr}"))
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("incomplete HTTP response ({} bytes)", raw.len());
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size_text = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| anyhow!("bad chunk size {size_text:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or_else(|| anyhow!("truncated chunk"))?;
        out.push_str(chunk);
        body = rest.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

/// Samples of a Prometheus text exposition, by metric name (labels kept in the name).
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_owned(), value.trim().parse::<f64>().ok()?))
        })
        .collect()
}

/// The sum of a metric over all its label sets (`name` and `name{...}`). `name` may list
/// alternatives, `a|b`: the first one present counts (metrics get renamed).
pub fn metric_sum(samples: &HashMap<String, f64>, name: &str) -> f64 {
    for alternative in name.split('|') {
        let mut found = false;
        let mut sum = 0.0;
        for (key, v) in samples {
            let matches = key
                .strip_prefix(alternative)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'));
            if matches {
                found = true;
                sum += v;
            }
        }
        if found {
            return sum;
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready";
        assert_eq!(parse_response(plain).expect("plain"), (200, "ready".into()));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).expect("chunked"),
            (503, "abcde".into())
        );
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }

    #[test]
    fn parses_metrics() {
        let m = parse_metrics("# HELP x y\n# TYPE x counter\nx 12\ny{a=\"b\"} 1.5\n");
        assert_eq!(m.get("x"), Some(&12.0));
        assert_eq!(m.get("y{a=\"b\"}"), Some(&1.5));
        let m = parse_metrics("d{t=\"a\"} 2\nd{t=\"b\"} 3\nd_total 7\nd 1\n");
        assert_eq!(metric_sum(&m, "d"), 6.0);
        assert_eq!(metric_sum(&m, "absent"), 0.0);
        assert_eq!(metric_sum(&m, "absent|d_total"), 7.0);
    }
}
