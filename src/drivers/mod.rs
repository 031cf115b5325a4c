//! Builders: how an image is produced, checked and removed.
//!
//! Each builder kind is one module that describes itself once (a
//! [`BuilderKind`]: schema, target, plan-time checks, the files it reads)
//! and implements [`Builder`]; [`KINDS`] lists them, and everything else asks
//! [`kind_of`] instead of matching on names. To add one: write the module
//! with its `KIND`, add one line to [`KINDS`] (see CONTRIBUTING.md).
//!
//! A [`Builder`] never sees a plan: `apply` hands it one evaluated
//! [`crate::spec::ImageSpec`] (image references already replaced by real
//! artifact ids) and gets an [`crate::state::Artifact`] back. Builders own
//! their temporary resources and must release them on success, failure and
//! cancellation alike. `cloud` is what the cloud builders share.

pub mod amazon_ebs;
pub mod chroot;
#[cfg_attr(
    not(any(feature = "aws", feature = "openstack")),
    allow(dead_code, unused_imports)
)]
pub mod cloud;
pub mod disk;
pub mod kind;
pub mod local;
pub mod null;
pub mod openstack;
pub mod qemu;
pub mod vm;

pub use kind::{Builder, BuilderKind, Recorded};

/// The registry: every builder kind imgform knows (also those whose
/// implementation this build leaves out).
pub static KINDS: &[&BuilderKind] = &[
    &null::KIND,
    &chroot::KIND,
    &amazon_ebs::KIND,
    &openstack::KIND,
    &qemu::KIND,
];

/// The builder kind called `name`.
pub fn kind_of(name: &str) -> Option<&'static BuilderKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The names of every builder kind, for hints.
pub fn kind_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name())
}

/// The implementation of builder kind `name`, if imgform has it.
pub fn builder_for(name: &str) -> Option<&'static dyn Builder> {
    kind_of(name).and_then(|k| k.builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_consistent() {
        for kind in KINDS {
            crate::schema::assert_consistent(&kind.schema);
        }
        for kind in crate::provision::KINDS {
            crate::schema::assert_consistent(&kind.schema);
        }
    }
}
