//! `data "http"`: one HTTP(S) request; its body, status and response
//! headers. Packer's attributes: `url` (required), `method` (default GET),
//! `request_headers`, `request_body`. A status outside 2xx is an error, as
//! in Packer. The body's SHA-256 is what enters content addresses, so a
//! changed document makes the images that use it stale.
//!
//! Request headers are treated as secret (they often carry a token): they
//! are sent, never written down.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{config_str, out, DataKind, OutTy, Outputs, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, secret, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "http",
        attrs: &[&[
            input("url").string(),
            input("method").string(),
            input("request_body").string(),
            secret("request_headers"),
        ]],
        blocks: &[],
    },
    outputs: &[
        out("url", OutTy::String),
        out("body", OutTy::String),
        out("status_code", OutTy::Number),
        out("response_headers", OutTy::Map),
        // Packer's name for the response headers.
        out("request_headers", OutTy::Map),
    ],
    resolve,
    summary,
};

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];

fn summary(outputs: &Outputs) -> Value {
    let body = outputs.get("body").and_then(Value::as_str).unwrap_or("");
    Value::String(format!("sha256:{}", hex::encode(Sha256::digest(body))))
}

fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async move {
        let config = request.config;
        let url = config_str(config, "url").ok_or("`url` is required")?;
        let method = config_str(config, "method").unwrap_or("GET").to_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(format!(
                "method `{method}` is not one of {}",
                METHODS.join(", ")
            ));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| format!("making an HTTP client: {e}"))?;
        let mut req = client.request(method, url);
        if let Some(Value::Object(headers)) = config.get("request_headers") {
            for (name, value) in headers {
                req = req.header(name.as_str(), crate::spec::scalar(value));
            }
        }
        if let Some(body) = config_str(config, "request_body") {
            req = req.body(body.to_owned());
        }
        let response = req
            .send()
            .await
            .map_err(|e| format!("requesting {url}: {}", error_chain(&e)))?;
        let status = response.status();
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in response.headers() {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer of {url}: {}", error_chain(&e)))?;
        if !status.is_success() {
            return Err(format!(
                "{url} answered {status}; the http data source needs a 2xx answer"
            ));
        }
        let body = String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("the body of {url} is not UTF-8 text"))?;
        let headers: serde_json::Map<String, Value> = headers
            .into_iter()
            .map(|(k, v)| (k, Value::String(v.join(","))))
            .collect();
        let mut outputs = Outputs::new();
        outputs.insert("url".into(), Value::String(url.to_owned()));
        outputs.insert("body".into(), Value::String(body));
        outputs.insert("status_code".into(), Value::from(status.as_u16()));
        outputs.insert("response_headers".into(), Value::Object(headers.clone()));
        outputs.insert("request_headers".into(), Value::Object(headers));
        Ok(Resolved::public(outputs))
    })
}

/// An error and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
