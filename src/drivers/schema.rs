//! What each source (builder) and provisioner type accepts, and which of its
//! attributes are *inputs* (they can change the bytes of the image and so go
//! into the content address) and which are *build settings* (they cannot,
//! and are kept out of it).
//!
//! The rule of thumb: anything that decides what ends up on the disk is an
//! input (base image, disk layout, user data, provisioner config); anything
//! that decides how, where or under which name the build runs is a setting
//! (instance type, network, names, tags, credentials, timeouts). Secrets are
//! settings that are never shown, logged, or written to state or plans.
//!
//! The loader rejects attributes not listed here, with a hint naming the
//! closest known one, so a typo never silently changes nothing.

/// How an attribute relates to the content address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Part of the manifest: changing it changes the content address.
    Input,
    /// Affects how the build runs, not what it produces. Kept out of the address.
    Setting,
    /// A setting whose value is secret: never in state, plans, logs or output.
    Secret,
}

#[derive(Debug, Clone, Copy)]
pub struct AttrSpec {
    pub name: &'static str,
    pub role: Role,
}

/// A nested block (e.g. `source_ami_filter { ... }`). Its attributes are
/// accepted without a schema of their own and take the block's role.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    pub name: &'static str,
    pub role: Role,
}

#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub kind: &'static str,
    pub attrs: &'static [&'static [AttrSpec]],
    pub blocks: &'static [BlockSpec],
}

impl Schema {
    pub fn attr(&self, name: &str) -> Option<&'static AttrSpec> {
        self.attrs
            .iter()
            .flat_map(|group| group.iter())
            .find(|a| a.name == name)
    }

    pub fn block(&self, name: &str) -> Option<&'static BlockSpec> {
        self.blocks.iter().find(|b| b.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.attrs
            .iter()
            .flat_map(|group| group.iter().map(|a| a.name))
            .chain(self.blocks.iter().map(|b| b.name))
    }
}

const fn input(name: &'static str) -> AttrSpec {
    AttrSpec {
        name,
        role: Role::Input,
    }
}
const fn setting(name: &'static str) -> AttrSpec {
    AttrSpec {
        name,
        role: Role::Setting,
    }
}
const fn secret(name: &'static str) -> AttrSpec {
    AttrSpec {
        name,
        role: Role::Secret,
    }
}

/// Communicator attributes shared by every builder that connects to a
/// machine. All settings: how to reach the machine does not change what is
/// built. `ssh_clear_authorized_keys` is the exception: it edits the image.
const COMMUNICATOR: &[AttrSpec] = &[
    setting("communicator"),
    setting("pause_before_connecting"),
    setting("ssh_host"),
    setting("ssh_port"),
    setting("ssh_username"),
    secret("ssh_password"),
    setting("ssh_private_key_file"),
    setting("ssh_keypair_name"),
    setting("ssh_agent_auth"),
    setting("ssh_timeout"),
    setting("ssh_wait_timeout"),
    setting("ssh_handshake_attempts"),
    setting("ssh_bastion_host"),
    setting("ssh_bastion_port"),
    setting("ssh_bastion_username"),
    secret("ssh_bastion_password"),
    setting("ssh_bastion_private_key_file"),
    setting("ssh_bastion_agent_auth"),
    setting("ssh_known_hosts_file"),
    setting("ssh_host_key_fingerprint"),
    setting("ssh_interface"),
    setting("ssh_ip_version"),
    setting("ssh_keep_alive_interval"),
    setting("ssh_read_write_timeout"),
    setting("ssh_pty"),
    setting("ssh_file_transfer_method"),
    setting("ssh_disable_agent_forwarding"),
    setting("ssh_certificate_file"),
    setting("ssh_proxy_host"),
    setting("ssh_proxy_port"),
    setting("ssh_proxy_username"),
    secret("ssh_proxy_password"),
    setting("ssh_local_tunnels"),
    setting("ssh_remote_tunnels"),
    setting("ssh_ciphers"),
    setting("ssh_key_exchange_algorithms"),
    input("ssh_clear_authorized_keys"),
    setting("temporary_key_pair_type"),
    setting("temporary_key_pair_bits"),
    setting("temporary_key_pair_name"),
    setting("winrm_host"),
    setting("winrm_port"),
    setting("winrm_username"),
    secret("winrm_password"),
    setting("winrm_timeout"),
    setting("winrm_use_ssl"),
    setting("winrm_insecure"),
    setting("winrm_use_ntlm"),
];

/// imgform's own per-source settings: retention and drift age.
const IMGFORM: &[AttrSpec] = &[setting("keep_previous"), setting("max_age")];

/// `null`: builds nothing; runs its provisioners. Only communicator settings.
pub const NULL: Schema = Schema {
    kind: "null",
    attrs: &[COMMUNICATOR, IMGFORM],
    blocks: &[],
};

/// `chroot`: imgform's local builder. The base root filesystem, the disk
/// format, size and filesystem label decide the bytes of the image; where it
/// is written (`output_dir`) does not.
pub const CHROOT: Schema = Schema {
    kind: "chroot",
    attrs: &[
        &[
            input("base"),
            input("format"),
            input("size"),
            input("label"),
            input("source_date_epoch"),
            setting("output_dir"),
            setting("work_dir"),
        ],
        COMMUNICATOR,
        IMGFORM,
    ],
    blocks: &[],
};

/// `amazon-ebs`: inputs are what ends up on the AMI's disks — the source AMI
/// (or its filter, resolved to an id), block device mappings, user data and
/// boot features. Everything about where and how the instance runs and how
/// the AMI is named, tagged, shared and copied is a setting.
pub const AMAZON_EBS: Schema = Schema {
    kind: "amazon-ebs",
    attrs: &[
        &[
            input("source_ami"),
            input("user_data"),
            input("user_data_file"),
            input("ami_virtualization_type"),
            input("ena_support"),
            input("sriov_support"),
            input("boot_mode"),
            input("imds_support"),
            input("tpm_support"),
            input("uefi_data"),
            input("encrypt_boot"),
            input("kms_key_id"),
            input("ami_architecture"),
            input("no_ephemeral"),
            setting("region"),
            setting("instance_type"),
            setting("ami_name"),
            setting("ami_description"),
            setting("tags"),
            setting("run_tags"),
            setting("run_volume_tags"),
            setting("snapshot_tags"),
            setting("spot_tags"),
            setting("fleet_tags"),
            setting("subnet_id"),
            setting("vpc_id"),
            setting("security_group_id"),
            setting("security_group_ids"),
            setting("associate_public_ip_address"),
            setting("availability_zone"),
            setting("ami_users"),
            setting("ami_groups"),
            setting("ami_org_arns"),
            setting("ami_ou_arns"),
            setting("ami_regions"),
            setting("ami_product_codes"),
            setting("region_kms_key_ids"),
            setting("snapshot_users"),
            setting("snapshot_groups"),
            setting("skip_create_ami"),
            setting("skip_save_build_region"),
            setting("deprecate_at"),
            setting("shutdown_behavior"),
            setting("disable_stop_instance"),
            setting("iam_instance_profile"),
            setting("spot_price"),
            setting("spot_instance_types"),
            setting("ebs_optimized"),
            setting("enable_t2_unlimited"),
            setting("enable_unlimited_credits"),
            setting("force_deregister"),
            setting("force_delete_snapshot"),
            setting("tenancy"),
            setting("temporary_security_group_source_cidrs"),
            setting("temporary_security_group_source_public_ip"),
            setting("session_manager_port"),
            setting("pause_before_ssm"),
            setting("profile"),
            secret("access_key"),
            secret("secret_key"),
            secret("token"),
            setting("custom_endpoint_ec2"),
            setting("insecure_skip_tls_verify"),
            setting("decode_authorization_messages"),
            setting("max_retries"),
            setting("skip_region_validation"),
            setting("skip_metadata_api_check"),
            setting("skip_credential_validation"),
            setting("shared_credentials_file"),
        ],
        COMMUNICATOR,
        IMGFORM,
    ],
    blocks: &[
        BlockSpec {
            name: "source_ami_filter",
            role: Role::Input,
        },
        BlockSpec {
            name: "launch_block_device_mappings",
            role: Role::Input,
        },
        BlockSpec {
            name: "ami_block_device_mappings",
            role: Role::Input,
        },
        BlockSpec {
            name: "metadata_options",
            role: Role::Input,
        },
        BlockSpec {
            name: "subnet_filter",
            role: Role::Setting,
        },
        BlockSpec {
            name: "vpc_filter",
            role: Role::Setting,
        },
        BlockSpec {
            name: "security_group_filter",
            role: Role::Setting,
        },
        BlockSpec {
            name: "assume_role",
            role: Role::Setting,
        },
        BlockSpec {
            name: "aws_polling",
            role: Role::Setting,
        },
        BlockSpec {
            name: "placement",
            role: Role::Setting,
        },
        BlockSpec {
            name: "run_tag",
            role: Role::Setting,
        },
        BlockSpec {
            name: "tag",
            role: Role::Setting,
        },
        BlockSpec {
            name: "snapshot_tag",
            role: Role::Setting,
        },
        BlockSpec {
            name: "temporary_iam_instance_profile_policy_document",
            role: Role::Setting,
        },
    ],
};

/// `openstack`: inputs are the source image (or its filter, resolved to an
/// id), the volume layout, user data and config drive, and — in upload mode —
/// the local image uploaded. Credentials, placement, networking, naming and
/// image metadata are settings.
pub const OPENSTACK: Schema = Schema {
    kind: "openstack",
    attrs: &[
        &[
            input("source_image"),
            input("source_image_name"),
            input("external_source_image_url"),
            input("external_source_image_format"),
            input("external_source_image_properties"),
            input("user_data"),
            input("user_data_file"),
            input("config_drive"),
            input("image_disk_format"),
            input("use_blockstorage_volume"),
            input("volume_size"),
            input("volume_type"),
            input("upload_from"),
            setting("identity_endpoint"),
            setting("auth_url"),
            setting("username"),
            setting("user_id"),
            secret("password"),
            secret("token"),
            setting("application_credential_id"),
            setting("application_credential_name"),
            secret("application_credential_secret"),
            setting("user_domain_name"),
            setting("user_domain_id"),
            setting("tenant_name"),
            setting("tenant_id"),
            setting("project_name"),
            setting("project_id"),
            setting("domain_name"),
            setting("domain_id"),
            setting("cloud"),
            setting("region"),
            setting("insecure"),
            setting("cacert"),
            setting("cert"),
            setting("key"),
            setting("endpoint_type"),
            setting("flavor"),
            setting("networks"),
            setting("ports"),
            setting("floating_ip_network"),
            setting("floating_ip"),
            setting("reuse_ips"),
            setting("use_floating_ip"),
            setting("security_groups"),
            setting("availability_zone"),
            setting("volume_name"),
            setting("volume_availability_zone"),
            setting("image_name"),
            setting("image_visibility"),
            setting("image_tags"),
            setting("image_members"),
            setting("image_auto_accept_members"),
            setting("image_min_disk"),
            setting("metadata"),
            setting("instance_name"),
            setting("instance_metadata"),
            setting("force_delete"),
            setting("skip_create_image"),
            setting("rackconnect_wait"),
            setting("wait_image_ready_timeout"),
            setting("network_discovery_cidrs"),
            setting("server_name"),
        ],
        COMMUNICATOR,
        IMGFORM,
    ],
    blocks: &[
        BlockSpec {
            name: "source_image_filter",
            role: Role::Input,
        },
        BlockSpec {
            name: "network",
            role: Role::Setting,
        },
    ],
};

pub const BUILDERS: &[&Schema] = &[&NULL, &CHROOT, &AMAZON_EBS, &OPENSTACK];

pub fn builder_schema(kind: &str) -> Option<&'static Schema> {
    BUILDERS.iter().copied().find(|s| s.kind == kind)
}

/// Every provisioner accepts these; they decide when and how often it runs,
/// not what it does, so they are settings.
pub const PROVISIONER_COMMON: &[AttrSpec] = &[
    setting("only"),
    setting("except"),
    setting("max_retries"),
    setting("timeout"),
    setting("pause_before"),
    input("override"),
];

const SHELL_COMMON: &[AttrSpec] = &[
    input("inline"),
    input("script"),
    input("scripts"),
    input("environment_vars"),
    input("env"),
    input("execute_command"),
    input("inline_shebang"),
    input("valid_exit_codes"),
    input("binary"),
    setting("env_var_format"),
    setting("use_env_var_file"),
];

/// `shell`: runs inline commands or scripts on the machine. Everything that
/// decides what runs is an input; where the script is staged is not.
pub const SHELL: Schema = Schema {
    kind: "shell",
    attrs: &[
        SHELL_COMMON,
        &[
            setting("remote_folder"),
            setting("remote_file"),
            setting("remote_path"),
            setting("skip_clean"),
            setting("expect_disconnect"),
            setting("start_retry_timeout"),
            setting("pause_after"),
        ],
        PROVISIONER_COMMON,
    ],
    blocks: &[],
};

/// `shell-local`: runs on the machine running imgform, in the definition dir.
pub const SHELL_LOCAL: Schema = Schema {
    kind: "shell-local",
    attrs: &[
        SHELL_COMMON,
        &[
            input("command"),
            setting("only_on"),
            setting("use_linux_pathing"),
            setting("tempfile_extension"),
        ],
        PROVISIONER_COMMON,
    ],
    blocks: &[],
};

/// `file`: uploads (or downloads) files and directories.
pub const FILE: Schema = Schema {
    kind: "file",
    attrs: &[
        &[
            input("source"),
            input("sources"),
            input("content"),
            input("destination"),
            input("direction"),
            input("mode"),
            input("owner"),
            setting("generated"),
        ],
        PROVISIONER_COMMON,
    ],
    blocks: &[],
};

/// `ansible`: runs `ansible-playbook` against the machine. The playbook and
/// what it reaches, the galaxy file, extra arguments and environment are
/// inputs; how Ansible connects is not.
pub const ANSIBLE: Schema = Schema {
    kind: "ansible",
    attrs: &[
        &[
            input("playbook_file"),
            input("extra_arguments"),
            input("ansible_env_vars"),
            input("groups"),
            input("empty_groups"),
            input("host_alias"),
            input("galaxy_file"),
            input("galaxy_command"),
            input("galaxy_force_install"),
            input("galaxy_force_with_deps"),
            input("roles_path"),
            input("collections_path"),
            input("user"),
            setting("command"),
            setting("use_proxy"),
            setting("keep_inventory_file"),
            setting("inventory_file"),
            setting("inventory_file_template"),
            setting("inventory_directory"),
            setting("ansible_ssh_extra_args"),
            setting("sftp_command"),
            setting("skip_version_check"),
            setting("use_sftp"),
            setting("local_port"),
            setting("ssh_host_key_file"),
            setting("ssh_authorized_key_file"),
            setting("ansible_winrm_use_http"),
            setting("use_proxy"),
        ],
        PROVISIONER_COMMON,
    ],
    blocks: &[],
};

/// `component`: EC2 Image Builder component documents. The documents'
/// bytes and the parameters are inputs.
pub const COMPONENT: Schema = Schema {
    kind: "component",
    attrs: &[
        &[input("document"), input("parameters")],
        PROVISIONER_COMMON,
    ],
    blocks: &[],
};

pub const PROVISIONERS: &[&Schema] = &[&SHELL, &SHELL_LOCAL, &FILE, &ANSIBLE, &COMPONENT];

pub fn provisioner_schema(kind: &str) -> Option<&'static Schema> {
    PROVISIONERS.iter().copied().find(|s| s.kind == kind)
}

/// The closest name among `candidates`, for "did you mean" hints.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            closest("instnce_type", AMAZON_EBS.names()),
            Some("instance_type")
        );
        assert_eq!(closest("zzzzzzzzzzzz", AMAZON_EBS.names()), None);
    }

    #[test]
    fn no_attribute_listed_twice_with_different_roles() {
        for schema in BUILDERS.iter().chain(PROVISIONERS) {
            for name in schema.names() {
                let roles: Vec<_> = schema
                    .attrs
                    .iter()
                    .flat_map(|g| g.iter())
                    .filter(|a| a.name == name)
                    .map(|a| a.role)
                    .collect();
                assert!(
                    roles.windows(2).all(|w| w[0] == w[1]),
                    "{} {}",
                    schema.kind,
                    name
                );
            }
        }
    }
}
