//! HTTP health checks: `GET <path>` on the process's port, healthy on 200-399.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether `http://127.0.0.1:<port><path>` answers 200-399 within `timeout`.
pub async fn check(port: u16, path: &str, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, probe(port, path))
        .await
        .unwrap_or(false)
}

async fn probe(port: u16, path: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: dray-health\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthy_on_2xx_unhealthy_on_5xx_or_nothing() {
        for (reply, want) in [
            ("HTTP/1.1 200 OK\r\n\r\n", true),
            ("HTTP/1.1 503 No\r\n\r\n", false),
        ] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(reply.as_bytes()).await;
            });
            assert_eq!(check(port, "/", Duration::from_secs(2)).await, want);
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(!check(port, "/", Duration::from_secs(1)).await);
    }
}
