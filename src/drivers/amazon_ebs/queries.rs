//! AMI and instance queries and waits of the `amazon-ebs` builder: an
//! instance or an AMI by id, waiting for one to reach a state (polling EC2
//! up to a limit; the build's comes from the source's `aws_polling`), the
//! account's own AMIs (listed once per process and region), and deleting an
//! AMI with its snapshots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{Image, ImageState, Instance, InstanceStateName};
use serde_json::Value;

use super::client::{aws_error, error_code, ClientSettings, Ec2};
use super::TAG_ADDRESS;
use crate::build::BuildError;
use crate::drivers::cloud::{self, failed};
use crate::spec::ImageSpec;

/// The first wait between polls of EC2 (doubling to 5 s).
const POLL_FIRST: Duration = Duration::from_millis(500);

pub(super) fn polling_limit(spec: &ImageSpec) -> Duration {
    let polling = spec.attr("aws_polling");
    let delay = polling
        .and_then(|p| p.get("delay_seconds"))
        .and_then(Value::as_u64)
        .unwrap_or(15);
    let attempts = polling
        .and_then(|p| p.get("max_attempts"))
        .and_then(Value::as_u64)
        .unwrap_or(120);
    Duration::from_secs((delay * attempts).max(60))
}

async fn describe_instance(ec2: &Ec2, id: &str) -> Result<Option<Instance>, BuildError> {
    let out = ec2
        .client
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .map_err(|e| aws_error(&format!("describing instance {id}"), e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
        .cloned())
}

pub(super) async fn wait_instance(
    ec2: &Ec2,
    id: &str,
    want: InstanceStateName,
    limit: Duration,
) -> Result<Instance, BuildError> {
    cloud::wait_for(
        POLL_FIRST,
        &format!("instance {id} to be {}", want.as_str()),
        limit,
        || async {
            let instance = describe_instance(ec2, id).await?;
            match instance {
                Some(i) => {
                    let state = i.state().and_then(|s| s.name()).cloned();
                    if state.as_ref() == Some(&want) {
                        return Ok(Some(i));
                    }
                    if want == InstanceStateName::Running
                        && matches!(
                            state,
                            Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                        )
                    {
                        let reason = i
                            .state_reason()
                            .and_then(|r| r.message())
                            .unwrap_or("no reason given");
                        return Err(failed(format!(
                            "instance {id} terminated before it was running: {reason}"
                        )));
                    }
                    Ok(None)
                }
                None if want == InstanceStateName::Terminated => {
                    Ok(Some(Instance::builder().build()))
                }
                None => Ok(None),
            }
        },
    )
    .await
}

pub(super) async fn describe_image(ec2: &Ec2, id: &str) -> Result<Option<Image>, BuildError> {
    match ec2.client.describe_images().image_ids(id).send().await {
        Ok(out) => Ok(out
            .images()
            .iter()
            .find(|i| i.image_id() == Some(id))
            .cloned()),
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("InvalidAMIID")) => Ok(None),
        Err(e) => Err(aws_error(&format!("describing AMI {id}"), e)),
    }
}

pub(super) async fn wait_image_available(
    ec2: &Ec2,
    id: &str,
    limit: Duration,
) -> Result<Image, BuildError> {
    cloud::wait_for(
        POLL_FIRST,
        &format!("AMI {id} to be available"),
        limit,
        || async {
            match describe_image(ec2, id).await? {
                Some(image) => match image.state() {
                    Some(ImageState::Available) => Ok(Some(image)),
                    Some(ImageState::Failed | ImageState::Error | ImageState::Invalid) => {
                        Err(failed(format!(
                            "AMI {id} failed: {}",
                            image
                                .state_reason()
                                .and_then(|r| r.message())
                                .unwrap_or("no reason given")
                        )))
                    }
                    _ => Ok(None),
                },
                None => Ok(None),
            }
        },
    )
    .await
}

pub(super) fn snapshots_of(image: &Image) -> Vec<String> {
    image
        .block_device_mappings()
        .iter()
        .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
        .map(str::to_owned)
        .collect()
}

/// One AMI the account owns: its state and its `imgform:address` tag.
#[derive(Debug, Clone)]
pub(super) struct Owned {
    pub(super) state: Option<ImageState>,
    pub(super) address: Option<String>,
}

/// The AMIs the account owns in a region, by id, listed once per process:
/// refresh asks about every recorded AMI and drift for every image's tagged
/// AMIs; one paginated call per region replaces a call per image.
pub(super) async fn owned_images(
    ec2: &Ec2,
    settings: &ClientSettings,
) -> Result<Arc<BTreeMap<String, Owned>>, BuildError> {
    type Listing = Arc<BTreeMap<String, Owned>>;
    static LISTED: std::sync::LazyLock<tokio::sync::Mutex<BTreeMap<String, Listing>>> =
        std::sync::LazyLock::new(Default::default);
    let key = format!("{settings:?}/{}", ec2.region);
    let mut listed = LISTED.lock().await;
    if let Some(found) = listed.get(&key) {
        return Ok(found.clone());
    }
    let mut images = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let out = ec2
            .client
            .describe_images()
            .owners("self")
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("listing the account's AMIs", e))?;
        for image in out.images() {
            if let Some(id) = image.image_id() {
                let address = image
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(TAG_ADDRESS))
                    .and_then(|t| t.value())
                    .map(str::to_owned);
                images.insert(
                    id.to_owned(),
                    Owned {
                        state: image.state().cloned(),
                        address,
                    },
                );
            }
        }
        match out.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    let found = Arc::new(images);
    listed.insert(key, found.clone());
    Ok(found)
}

/// Deregisters an AMI and deletes its snapshots.
pub(super) async fn delete_image(ec2: &Ec2, id: &str) -> Result<(), BuildError> {
    let snapshots = match describe_image(ec2, id).await? {
        Some(image) => snapshots_of(&image),
        None => return Ok(()),
    };
    deregister_image(ec2, id).await?;
    for snapshot in snapshots {
        if let Err(e) = ec2
            .client
            .delete_snapshot()
            .snapshot_id(&snapshot)
            .send()
            .await
        {
            if !error_code(&e).is_some_and(|c| c.starts_with("InvalidSnapshot")) {
                return Err(aws_error(&format!("deleting snapshot {snapshot}"), e));
            }
        }
    }
    Ok(())
}

/// Deregisters AMI `id`, keeping its snapshots; one already gone is fine.
pub(super) async fn deregister_image(ec2: &Ec2, id: &str) -> Result<(), BuildError> {
    if let Err(e) = ec2.client.deregister_image().image_id(id).send().await {
        if !error_code(&e).is_some_and(|c| c.starts_with("InvalidAMIID")) {
            return Err(aws_error(&format!("deregistering {id}"), e));
        }
    }
    Ok(())
}
