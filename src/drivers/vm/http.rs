//! The small HTTP server a booting installer fetches its answers from
//! (Packer's `http_directory` / `http_content`): GET and HEAD only, on
//! 127.0.0.1 (QEMU's user network shows the host's loopback to the guest as
//! 10.0.2.2), for as long as the [`HttpServer`] lives.
//!
//! `http_content` (URL path → text) wins over `http_directory`; a path that
//! leaves the directory (`..`) or names nothing is a 404.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The address the guest reaches the host's loopback at, under QEMU's user
/// networking (Packer's `{{ .HTTPIP }}`).
pub const GUEST_HOST_IP: &str = "10.0.2.2";

/// What the server serves.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// `http_directory`, absolute.
    pub directory: Option<PathBuf>,
    /// `http_content`: `/path` → bytes.
    pub content: BTreeMap<String, Vec<u8>>,
}

/// A running server; stopped when dropped.
pub struct HttpServer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    /// Listens on a free port of 127.0.0.1 in `ports`.
    pub async fn start(
        served: Served,
        ports: std::ops::RangeInclusive<u16>,
    ) -> std::io::Result<HttpServer> {
        let listener = bind(ports).await?;
        let port = listener.local_addr()?.port();
        let served = Arc::new(served);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let served = served.clone();
                tokio::spawn(async move {
                    let _ = answer(stream, &served).await;
                });
            }
        });
        Ok(HttpServer { port, task })
    }
}

async fn bind(ports: std::ops::RangeInclusive<u16>) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..5 {
        let Some(port) = super::free_port_in(ports.clone()) else {
            break;
        };
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("no free port between {} and {}", ports.start(), ports.end()),
        )
    }))
}

/// Serves one request and closes the connection.
async fn answer(stream: TcpStream, served: &Served) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut request = String::new();
    reader.read_line(&mut request).await?;
    // The headers say nothing this server needs.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let (status, body) = match method {
        "GET" | "HEAD" => match find(served, path).await {
            Some(bytes) => ("200 OK", bytes),
            None => ("404 Not Found", b"not found\n".to_vec()),
        },
        _ => ("405 Method Not Allowed", Vec::new()),
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        write.write_all(&body).await?;
    }
    write.shutdown().await
}

/// The bytes at URL path `path`, if any.
async fn find(served: &Served, path: &str) -> Option<Vec<u8>> {
    let path = percent_decode(path);
    let key = format!("/{}", path.trim_start_matches('/'));
    if let Some(bytes) = served.content.get(&key) {
        return Some(bytes.clone());
    }
    let dir = served.directory.as_ref()?;
    let rel = Path::new(key.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return None;
    }
    let full = dir.join(rel);
    let full = if full.is_dir() {
        full.join("index.html")
    } else {
        full
    };
    tokio::fs::read(full).await.ok()
}

/// `%2F` → `/`: installers quote little, but some do.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(port: u16, path: &str) -> String {
        use tokio::io::AsyncReadExt;
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    }

    #[tokio::test]
    async fn serves_content_then_the_directory_and_nothing_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("www")).unwrap();
        std::fs::write(dir.path().join("www/preseed.cfg"), "from the dir\n").unwrap();
        std::fs::write(dir.path().join("secret"), "outside\n").unwrap();
        let served = Served {
            directory: Some(dir.path().join("www")),
            content: [("/ks.cfg".to_owned(), b"from content\n".to_vec())].into(),
        };
        let server = HttpServer::start(served, 8100..=9000).await.unwrap();
        assert!((8100..=9000).contains(&server.port));
        let ks = get(server.port, "/ks.cfg").await;
        assert!(
            ks.starts_with("HTTP/1.0 200 OK") && ks.ends_with("from content\n"),
            "{ks}"
        );
        let preseed = get(server.port, "/preseed.cfg?x=1").await;
        assert!(preseed.ends_with("from the dir\n"), "{preseed}");
        assert!(get(server.port, "/../secret")
            .await
            .starts_with("HTTP/1.0 404"));
        assert!(get(server.port, "/%2E%2E/secret")
            .await
            .starts_with("HTTP/1.0 404"));
        assert!(get(server.port, "/nothing")
            .await
            .starts_with("HTTP/1.0 404"));
    }
}
