//! `data "null"`: hands its `input` back as `output` (Packer's test and
//! plumbing data source). Nothing is asked anywhere.

use super::{out, DataKind, OutTy, Outputs, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "null",
        attrs: &[&[input("input")]],
        blocks: &[],
    },
    outputs: &[out("output", OutTy::String)],
    resolve,
    summary: |outputs| super::output(outputs, "output"),
};

fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async move {
        let value = request
            .config
            .get("input")
            .cloned()
            .ok_or_else(|| "`input` is required".to_owned())?;
        let mut outputs = Outputs::new();
        outputs.insert("output".to_owned(), value);
        Ok(Resolved::public(outputs))
    })
}
