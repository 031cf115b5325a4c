//! The **resolve** stage: a base image given by a filter
//! (`source_ami_filter`, `source_image_filter`) becomes a concrete id at
//! plan time. The id is an input, so a newer upstream image makes the image
//! stale. Each distinct query is asked once per run. Data sources are
//! resolved in the same stage, before any image (`super::data`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::addr::ImageAddr;
use crate::diag::Diagnostic;
use crate::drivers;
use crate::fingerprint::canonical_json;
use crate::spec::ImageSpec;
use crate::state::{BaseRecord, DataRecord, StateFile};

/// How the resolve stage finds base images given by a filter.
pub enum Resolve {
    /// Not at all (`validate`, `graph`): manifests of images whose base is a
    /// filter carry no base id, so their addresses are not final.
    Skip,
    /// Ask the cloud now (`plan`, `apply`, `drift`). Runs on the prepare
    /// threads through the runtime's handle.
    Refresh(tokio::runtime::Handle),
    /// `--refresh=false`: reuse the resolution recorded in the state (or a
    /// saved plan) when the query is the same; ask only for the others.
    Recorded(tokio::runtime::Handle, Recordings),
    /// `--refresh=false` before the definitions are loaded: [`super::prepare`]
    /// turns it into `Recorded` with what the state records, read only when
    /// something can use it (a data block, a builder with a base image
    /// filter), so a plan of `null` images reads its state once, not twice.
    /// Holds the `--backend-config` flags that choose the state.
    RecordedInState(tokio::runtime::Handle, Vec<String>),
}

/// Resolutions recorded in the state or a saved plan.
#[derive(Debug, Clone, Default)]
pub struct Recordings {
    /// Each image's base.
    pub bases: BTreeMap<ImageAddr, BaseRecord>,
    /// Each data source (`data.KIND.NAME`), as the most recently built image
    /// using it recorded it.
    pub data: BTreeMap<String, DataRecord>,
}

impl Recordings {
    /// What `states` recorded.
    pub fn from_states(states: Vec<StateFile>) -> Recordings {
        let mut out = Recordings::default();
        let mut data_built: BTreeMap<String, String> = BTreeMap::new();
        for (addr, record) in states.into_iter().flat_map(|s| s.images) {
            for (address, data) in &record.data {
                let newer = data_built
                    .get(address)
                    .is_none_or(|at| at.as_str() < record.built_at.as_str());
                if newer {
                    data_built.insert(address.clone(), record.built_at.clone());
                    out.data.insert(address.clone(), data.clone());
                }
            }
            if let Some(base) = record.base {
                out.bases.insert(addr, base);
            }
        }
        out
    }
}

impl Resolve {
    /// `Refresh`, or with `refresh == false` what the state records (read
    /// by `prepare` when needed, from the backend `flags` and the
    /// definitions choose), on the current runtime.
    pub fn for_plan(refresh: bool, flags: &[String]) -> Resolve {
        let handle = tokio::runtime::Handle::current();
        if refresh {
            return Resolve::Refresh(handle);
        }
        Resolve::RecordedInState(handle, flags.to_vec())
    }
}

/// Resolutions made during one run: query → id (or the error).
#[derive(Default)]
pub(super) struct ResolveCache(Mutex<BTreeMap<String, Result<String, String>>>);

impl ResolveCache {
    /// The base `spec`'s filter selects, if its builder resolves one.
    pub(super) fn resolve_base(
        &self,
        resolve: &Resolve,
        spec: &ImageSpec,
    ) -> Result<Option<BaseRecord>, Diagnostic> {
        let handle = match resolve {
            Resolve::Skip => return Ok(None),
            Resolve::Refresh(h) | Resolve::Recorded(h, _) | Resolve::RecordedInState(h, _) => h,
        };
        let Some(builder) = drivers::builder_for(&spec.builder) else {
            return Ok(None);
        };
        let Some(asked) = builder.base_query(spec) else {
            return Ok(None);
        };
        let query = String::from_utf8_lossy(&canonical_json(&asked.query)).into_owned();
        if let Resolve::Recorded(_, recorded) = resolve {
            if let Some(base) = recorded.bases.get(&spec.addr).filter(|b| b.query == query) {
                return Ok(Some(base.clone()));
            }
        }
        let cached = self.0.lock().expect("resolve cache").get(&query).cloned();
        let result = match cached {
            Some(r) => r,
            None => {
                crate::watch::untracked(|| format!("{}: its base image was looked up", spec.addr));
                let r = handle
                    .block_on(builder.resolve_base(spec))
                    .map_err(|e| spec.scrub(&e.to_string()));
                self.0
                    .lock()
                    .expect("resolve cache")
                    .insert(query.clone(), r.clone());
                r
            }
        };
        match result {
            Ok(id) => Ok(Some(BaseRecord { query, id })),
            Err(message) => {
                let filter = spec
                    .attr_locs
                    .get(asked.attr)
                    .cloned()
                    .unwrap_or_else(|| spec.loc.clone());
                Err(Diagnostic::error(format!(
                    "{}: cannot resolve the base image: {message}",
                    spec.addr
                ))
                .at(Some(filter))
                .hint("check the filter and the credentials; with --refresh=false the resolution recorded in the state is reused"))
            }
        }
    }
}
