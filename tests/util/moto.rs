//! A moto server (S3 and EC2 APIs) on 127.0.0.1 for tests, killed on drop.
//! Needs `moto_server` (`pip install 'moto[server]'`, done by
//! scripts/install-test-deps.sh).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket every test server starts with.
pub const BUCKET: &str = "imgform-state";

/// A moto server, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
        let child = Command::new("moto_server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_else(|_| {
                Command::new("python3")
                    .args(["-m", "moto.server"])
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .expect("start moto (run scripts/install-test-deps.sh to install moto[server])");
        let mut moto = Moto { child, port };
        let started = Instant::now();
        loop {
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto exited ({status}); run scripts/install-test-deps.sh to install moto[server]");
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && moto.request("GET", "/", b"").0 == 200
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = moto.request("PUT", &format!("/{BUCKET}"), b"");
        assert_eq!(
            status,
            200,
            "create bucket: {}",
            String::from_utf8_lossy(&body)
        );
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One plain HTTP/1.0 request (moto does not check signatures, but
    /// wants an `Authorization` header to treat a request as the owner's).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let status_line = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        (status, response[split + 4..].to_vec())
    }

    /// An object's bytes, `None` when it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.request("GET", &format!("/{BUCKET}/{key}"), b"") {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => panic!("GET {key}: {status} {}", String::from_utf8_lossy(&body)),
        }
    }

    pub fn put(&self, key: &str, body: &[u8]) {
        let (status, _) = self.request("PUT", &format!("/{BUCKET}/{key}"), body);
        assert_eq!(status, 200, "PUT {key}");
    }

    pub fn json(&self, key: &str) -> serde_json::Value {
        let bytes = self
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in the bucket"));
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every key in the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{BUCKET}?list-type=2"), b"");
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        let mut keys: Vec<String> = text
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
