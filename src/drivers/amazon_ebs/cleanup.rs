//! Cleanup of the `amazon-ebs` builder: what a build created and must delete
//! again ([`Temporaries`]: instances, the temporary security group and key
//! pair, AMIs the build did not finish), and deleting it ([`cleanup`]).
//!
//! Cleanup keeps going past errors: a resource that will not go must not
//! keep the others around.

use std::time::{Duration, Instant};

use aws_sdk_ec2::types::InstanceStateName;

use super::client::{aws_error, connect, error_code, Ec2};
use super::queries::{delete_image, wait_instance};
use crate::build::events::EventSink;
use crate::drivers::cloud;

/// What a build created and must delete again.
#[derive(Debug, Default)]
pub(super) struct Temporaries {
    pub(super) key_pair: Option<String>,
    pub(super) security_group: Option<String>,
    pub(super) instances: Vec<String>,
    /// AMIs created by this build that are not (yet) its result:
    /// (region, AMI id). Cleared once the build succeeds.
    pub(super) images: Vec<(String, String)>,
}

impl cloud::Temporaries for Temporaries {
    fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in &self.instances {
            out.push(format!("instance {i}"));
        }
        if let Some(sg) = &self.security_group {
            out.push(format!("security group {sg}"));
        }
        if let Some(k) = &self.key_pair {
            out.push(format!("key pair {k}"));
        }
        for (region, ami) in &self.images {
            out.push(format!("AMI {ami} ({region})"));
        }
        out
    }
}

pub(super) type Shared = cloud::Shared<Temporaries>;

/// Deletes every temporary resource, reporting each step; keeps going past
/// errors and returns them all.
pub(super) async fn cleanup(ec2: &Ec2, temps: Temporaries, events: &EventSink) -> Vec<String> {
    let mut errors = Vec::new();
    let limit = Duration::from_secs(600);
    if !temps.instances.is_empty() {
        match ec2
            .client
            .terminate_instances()
            .set_instance_ids(Some(temps.instances.clone()))
            .send()
            .await
        {
            Ok(_) => {
                for id in &temps.instances {
                    events.step(format!("terminating instance {id}"));
                    if let Err(e) =
                        wait_instance(ec2, id, InstanceStateName::Terminated, limit).await
                    {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(aws_error("terminating the build instances", e).to_string()),
        }
    }
    if let Some(group) = &temps.security_group {
        // The group is in use until the instances are gone: retry a while.
        let start = Instant::now();
        loop {
            match ec2
                .client
                .delete_security_group()
                .group_id(group)
                .send()
                .await
            {
                Ok(_) => {
                    events.step(format!("deleted temporary security group {group}"));
                    break;
                }
                Err(e)
                    if error_code(&e) == Some("DependencyViolation")
                        && start.elapsed() < Duration::from_secs(300) =>
                {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(e) => {
                    errors.push(
                        aws_error(&format!("deleting security group {group}"), e).to_string(),
                    );
                    break;
                }
            }
        }
    }
    if let Some(name) = &temps.key_pair {
        match ec2.client.delete_key_pair().key_name(name).send().await {
            Ok(_) => events.step(format!("deleted temporary key pair {name}")),
            Err(e) => errors.push(aws_error(&format!("deleting key pair {name}"), e).to_string()),
        }
    }
    for (region, ami) in &temps.images {
        let there;
        let client = if region == &ec2.region {
            ec2
        } else {
            there = connect(&ec2.settings.in_region(region)).await;
            &there
        };
        match delete_image(client, ami).await {
            Ok(()) => events.step(format!("deregistered unfinished AMI {ami} ({region})")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}
