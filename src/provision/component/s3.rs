//! `S3Download` and `S3Upload`, carried out by imgform with the AWS SDK
//! (standard credential chain; `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`
//! select another endpoint, path-style) and moved to or from the machine
//! through its communicator, via a private temporary dir on this machine
//! that is removed afterwards.
//!
//! Compiled with the cargo feature `aws` only; without it the runner fails
//! both actions, saying so.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use serde_yaml::Value as Yaml;

use super::actions::sh_quote;
use super::document::yaml_str;
use super::{exec_capture, fail};
use crate::build::{BuildContext, BuildError};
use crate::provision::{comm_error, Communicator};

/// `s3://bucket/key` → (bucket, key).
fn split_s3_url(url: &str) -> Result<(String, String), BuildError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| fail(format!("`{url}` is not an s3://bucket/key URL")))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(fail(format!("`{url}` has no bucket")));
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Runs `action` for each input item (`source` → `destination`).
pub(super) async fn s3_action(
    ctx: &BuildContext<'_>,
    comm: &dyn Communicator,
    action: &str,
    inputs: &Yaml,
) -> Result<(), BuildError> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .ok();
    let client =
        crate::aws::s3_client(&crate::aws::AwsSettings::default(), endpoint.as_deref()).await;
    let items: Vec<&Yaml> = match inputs {
        Yaml::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    let tmp = crate::paths::PrivateTempDir::new("imgform-s3")
        .map_err(|e| fail(format!("creating a temporary dir: {e}")))?;
    let transfer = Transfer {
        ctx,
        comm,
        client: &client,
        tmp: tmp.path(),
    };
    let result = async {
        for item in items {
            let source = item
                .get("source")
                .map(yaml_str)
                .ok_or_else(|| fail(format!("{action} input needs `source`")))?;
            let destination = item
                .get("destination")
                .map(yaml_str)
                .ok_or_else(|| fail(format!("{action} input needs `destination`")))?;
            if action == "S3Download" {
                transfer.download(&source, &destination).await?;
            } else {
                transfer.upload(&source, &destination).await?;
            }
        }
        Ok(())
    }
    .await;
    drop(tmp);
    result
}

/// What moves objects between S3 and the machine: the build, the
/// machine's communicator, the S3 client and the local staging dir.
struct Transfer<'a> {
    ctx: &'a BuildContext<'a>,
    comm: &'a dyn Communicator,
    client: &'a aws_sdk_s3::Client,
    tmp: &'a Path,
}

impl Transfer<'_> {
    /// `S3Download`: the object at `source` (every object below the
    /// prefix for `prefix/*`) to `destination` on the machine.
    async fn download(&self, source: &str, destination: &str) -> Result<(), BuildError> {
        let (bucket, key) = split_s3_url(source)?;
        for (key, dest) in self.objects(&bucket, &key, source, destination).await? {
            self.ctx
                .events
                .step(format!("S3Download s3://{bucket}/{key} → {dest}"));
            let object = self
                .client
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| {
                    fail(format!(
                        "downloading s3://{bucket}/{key}: {}",
                        DisplayErrorContext(&e)
                    ))
                })?;
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| fail(format!("reading s3://{bucket}/{key}: {e}")))?
                .into_bytes();
            let local = self.tmp.join("object");
            std::fs::write(&local, &bytes)
                .map_err(|e| fail(format!("writing {}: {e}", local.display())))?;
            self.comm
                .upload(&local, &dest)
                .await
                .map_err(|e| comm_error("component", &format!("copying to {dest}: "), e))?;
        }
        Ok(())
    }

    /// The objects to download and where each goes: (key, path on the
    /// machine).
    async fn objects(
        &self,
        bucket: &str,
        key: &str,
        source: &str,
        destination: &str,
    ) -> Result<Vec<(String, String)>, BuildError> {
        // `prefix/*`: every object below the prefix, into the destination dir.
        if let Some(prefix) = key.strip_suffix('*') {
            let listed = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .map_err(|e| fail(format!("listing {source}: {}", DisplayErrorContext(&e))))?;
            Ok(listed
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter(|k| !k.ends_with('/'))
                .map(|k| {
                    (
                        k.to_owned(),
                        format!(
                            "{}/{}",
                            destination.trim_end_matches('/'),
                            &k[prefix.len()..]
                        ),
                    )
                })
                .collect())
        } else if destination.ends_with('/') {
            let name = key.rsplit('/').next().unwrap_or(key).to_owned();
            Ok(vec![(key.to_owned(), format!("{destination}{name}"))])
        } else {
            Ok(vec![(key.to_owned(), destination.to_owned())])
        }
    }

    /// `S3Upload`: the file `source` on the machine (every file below
    /// the dir for `dir/*`) to the object or prefix `destination`.
    async fn upload(&self, source: &str, destination: &str) -> Result<(), BuildError> {
        let (bucket, key) = split_s3_url(destination)?;
        let files: Vec<String> = match source.strip_suffix("/*") {
            Some(dir) => self.files_below(dir).await?,
            None => vec![source.to_owned()],
        };
        let base = source
            .strip_suffix("/*")
            .map(|d| format!("{}/", d.trim_end_matches('/')));
        for file in files {
            let object_key = object_key(&key, base.as_deref(), &file);
            self.ctx
                .events
                .step(format!("S3Upload {file} → s3://{bucket}/{object_key}"));
            let local = self.tmp.join("upload");
            self.comm
                .download(&file, &local)
                .await
                .map_err(|e| comm_error("component", &format!("reading {file}: "), e))?;
            let body = aws_sdk_s3::primitives::ByteStream::from_path(&local)
                .await
                .map_err(|e| fail(format!("reading {}: {e}", local.display())))?;
            self.client
                .put_object()
                .bucket(&bucket)
                .key(&object_key)
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    fail(format!(
                        "uploading s3://{bucket}/{object_key}: {}",
                        DisplayErrorContext(&e)
                    ))
                })?;
        }
        Ok(())
    }

    /// Every file below `dir` on the machine.
    async fn files_below(&self, dir: &str) -> Result<Vec<String>, BuildError> {
        let (code, listing) = exec_capture(
            self.ctx,
            self.comm,
            &format!("find {} -type f", sh_quote(dir)),
            &[],
            Duration::from_secs(300),
        )
        .await?;
        if code != 0 {
            return Err(fail(format!("listing {dir} on the machine failed")));
        }
        Ok(listing.lines().map(str::to_owned).collect())
    }
}

/// The key `file` is uploaded to: below the prefix `key` (relative to
/// `base`, the uploaded dir, if any), or `key` itself when it names an
/// object.
fn object_key(key: &str, base: Option<&str>, file: &str) -> String {
    match base {
        Some(b) => format!(
            "{}{}",
            if key.is_empty() || key.ends_with('/') {
                key.to_owned()
            } else {
                format!("{key}/")
            },
            file.strip_prefix(b).unwrap_or(file)
        ),
        None if key.is_empty() || key.ends_with('/') => {
            format!("{key}{}", file.rsplit('/').next().unwrap_or(file))
        }
        None => key.to_owned(),
    }
}
