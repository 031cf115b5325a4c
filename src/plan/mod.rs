//! Planning: a pure function of (images, state, options) → [`Plan`].
//!
//! The planner does no I/O: callers load states, previous manifests and the
//! previous bytes of text inputs, and refresh artifacts, before calling
//! [`plan`]. Views render the result; apply executes it unchanged.

pub mod diff;
pub mod file;
pub mod model;
pub mod planner;

pub use model::*;
pub use planner::{plan, PlanInput, PlannedImage};
