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
        Moto::start_env(&[])
    }

    /// A moto whose EC2 knows exactly these public AMIs (instead of its
    /// built-in list): (id, name, owner id), in creation order. (moto 5.2
    /// cannot load explicit creation dates for more than one region, so
    /// they all get the load time; the later id wins a tie.)
    pub fn start_with_amis(amis: &[(&str, &str, &str)], dir: &std::path::Path) -> Moto {
        let list: Vec<serde_json::Value> = amis
            .iter()
            .map(|(id, name, owner)| {
                serde_json::json!({
                    "ami_id": id, "name": name, "owner_id": owner,
                    "state": "available", "public": true, "root_device_type": "ebs",
                    "root_device_name": "/dev/sda1", "virtualization_type": "hvm",
                    "architecture": "x86_64", "image_type": "machine",
                    "description": name, "hypervisor": "xen",
                })
            })
            .collect();
        let path = dir.join("moto-amis.json");
        std::fs::write(&path, serde_json::to_vec(&list).unwrap()).unwrap();
        Moto::start_env(&[("MOTO_AMIS_PATH", path.to_str().unwrap())])
    }

    fn start_env(env: &[(&str, &str)]) -> Moto {
        // Two servers started at once may pick the same free port; the one
        // that loses exits, and must not take the winner for its own.
        for _ in 0..5 {
            if let Some(moto) = Moto::try_start(env) {
                return moto;
            }
        }
        panic!("moto could not get a port of its own in 5 attempts");
    }

    fn try_start(env: &[(&str, &str)]) -> Option<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
        let child = Command::new("moto_server")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_else(|_| {
                Command::new("python3")
                    .args(["-m", "moto.server"])
                    .args(args)
                    .envs(env.iter().copied())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .expect("start moto (run scripts/install-test-deps.sh to install moto[server])");
        let mut moto = Moto { child, port };
        let started = Instant::now();
        loop {
            if let Some(status) = moto.child.try_wait().unwrap() {
                if super::port_in_use_by_another(port) {
                    return None;
                }
                panic!("moto exited ({status}); run scripts/install-test-deps.sh to install moto[server]");
            }
            if super::owns_listener(moto.child.id(), port) && moto.request("GET", "/", b"").0 == 200
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
        Some(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment that points the AWS SDK at this server.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// One plain HTTP/1.0 request to S3 (moto does not check signatures,
    /// but wants an `Authorization` header to treat a request as the owner's).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        self.http(
            method,
            path,
            "application/octet-stream",
            ("us-east-1", "s3"),
            body,
        )
    }

    /// One call of a JSON-protocol API in us-east-1 (`AmazonSSM.PutParameter`,
    /// `secretsmanager.CreateSecret`, ...); returns the JSON answer,
    /// panicking on an error status.
    pub fn json_call(
        &self,
        service: &str,
        target: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        let (status, answer) = self.http_with(
            "POST",
            "/",
            "application/x-amz-json-1.1",
            ("us-east-1", service),
            &[("X-Amz-Target", target)],
            &serde_json::to_vec(body).unwrap(),
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(status == 200, "{target}: {status} {text}");
        serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null)
    }

    /// Puts an SSM parameter (`kind`: `String`, `StringList`, `SecureString`).
    pub fn put_parameter(&self, name: &str, kind: &str, value: &str) {
        self.json_call(
            "ssm",
            "AmazonSSM.PutParameter",
            &serde_json::json!({"Name": name, "Type": kind, "Value": value, "Overwrite": true}),
        );
    }

    /// Creates a Secrets Manager secret holding `value` as its string.
    pub fn create_secret(&self, name: &str, value: &str) {
        self.json_call(
            "secretsmanager",
            "secretsmanager.CreateSecret",
            &serde_json::json!({"Name": name, "SecretString": value}),
        );
    }

    /// Gives a Secrets Manager secret a new current value, creating it the
    /// first time.
    pub fn put_secret(&self, name: &str, value: &str) {
        let (status, _) = self.http_with(
            "POST",
            "/",
            "application/x-amz-json-1.1",
            ("us-east-1", "secretsmanager"),
            &[("X-Amz-Target", "secretsmanager.DescribeSecret")],
            &serde_json::to_vec(&serde_json::json!({"SecretId": name})).unwrap(),
        );
        if status == 200 {
            self.json_call(
                "secretsmanager",
                "secretsmanager.PutSecretValue",
                &serde_json::json!({"SecretId": name, "SecretString": value}),
            );
        } else {
            self.create_secret(name, value);
        }
    }

    /// One HTTP/1.0 request whose credential scope is (region, service):
    /// moto takes the region from it.
    fn http(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        scope: (&str, &str),
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        self.http_with(method, path, content_type, scope, &[], body)
    }

    fn http_with(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        (region, service): (&str, &str),
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
            self.port,
            body.len(),
            headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}\r\n"))
                .collect::<String>()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let status = String::from_utf8_lossy(&response[..split])
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        (status, response[split + 4..].to_vec())
    }

    /// One EC2 Query API call (form-encoded POST) in us-east-1; returns the
    /// XML answer, panicking on an error status.
    pub fn ec2(&self, params: &[(&str, &str)]) -> String {
        self.ec2_in("us-east-1", params)
    }

    /// An EC2 call in another region.
    pub fn ec2_in(&self, region: &str, params: &[(&str, &str)]) -> String {
        let mut form: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if !params.iter().any(|(k, _)| *k == "Version") {
            form.push("Version=2016-11-15".to_owned());
        }
        let (status, body) = self.http(
            "POST",
            "/",
            "application/x-www-form-urlencoded",
            (region, "ec2"),
            form.join("&").as_bytes(),
        );
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(status == 200, "EC2 {region} {params:?}: {status} {body}");
        body
    }

    /// Registers an AMI named `name` (owned by the test account); returns its id.
    pub fn register_image(&self, name: &str) -> String {
        let xml = self.ec2(&[
            ("Action", "RegisterImage"),
            ("Name", name),
            ("Architecture", "x86_64"),
            ("RootDeviceName", "/dev/xvda"),
            ("VirtualizationType", "hvm"),
        ]);
        xml_values(&xml, "imageId").remove(0)
    }

    /// Instance ids by state name (`running`, `terminated`, ...).
    pub fn instances(&self, state: &str) -> Vec<String> {
        let xml = self.ec2(&[
            ("Action", "DescribeInstances"),
            ("Filter.1.Name", "instance-state-name"),
            ("Filter.1.Value.1", state),
        ]);
        xml_values(&xml, "instanceId")
    }

    pub fn key_pairs(&self) -> Vec<String> {
        xml_values(&self.ec2(&[("Action", "DescribeKeyPairs")]), "keyName")
    }

    /// Security groups other than the VPCs' default ones.
    pub fn security_groups(&self) -> Vec<String> {
        xml_values(
            &self.ec2(&[("Action", "DescribeSecurityGroups")]),
            "groupName",
        )
        .into_iter()
        .filter(|n| n != "default")
        .collect()
    }

    /// The test account's AMIs: id → name.
    pub fn images(&self) -> Vec<(String, String)> {
        let xml = self.ec2(&[("Action", "DescribeImages"), ("Owner.1", "self")]);
        xml.split("<item>")
            .skip(1)
            .filter_map(|item| {
                let id = xml_values(item, "imageId").into_iter().next()?;
                let name = xml_values(item, "name")
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                Some((id, name))
            })
            .collect()
    }

    /// The snapshots behind AMI `id` (its block device mappings).
    pub fn image_snapshots(&self, id: &str) -> Vec<String> {
        let xml = self.ec2(&[("Action", "DescribeImages"), ("ImageId.1", id)]);
        xml_values(&xml, "snapshotId")
    }

    /// The ids of every snapshot the test account owns.
    pub fn snapshots(&self) -> Vec<String> {
        let xml = self.ec2(&[("Action", "DescribeSnapshots"), ("Owner.1", "self")]);
        xml_values(&xml, "snapshotId")
    }

    /// The tags of a resource: key → value.
    pub fn tags(&self, id: &str) -> std::collections::BTreeMap<String, String> {
        let xml = self.ec2(&[
            ("Action", "DescribeTags"),
            ("Filter.1.Name", "resource-id"),
            ("Filter.1.Value.1", id),
        ]);
        xml.split("<item>")
            .skip(1)
            .filter_map(|item| {
                Some((
                    xml_values(item, "key").into_iter().next()?,
                    xml_values(item, "value")
                        .into_iter()
                        .next()
                        .unwrap_or_default(),
                ))
            })
            .collect()
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

/// Every `<tag>value</tag>` in an XML text, in order.
pub fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split(close.as_str()).next())
        .map(str::to_owned)
        .collect()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
