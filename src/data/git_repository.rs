//! `data "git-repository"` (the ethanmdavidson/git plugin): the repository
//! holding `path` (default `.`, the definition dir; found walking up).
//! Outputs: `head` (the short name of where HEAD is: a branch, or `HEAD`
//! when detached), `branches`, `tags`, `is_clean` (no change and no
//! untracked file in the work tree, as `git status` sees it). The whole
//! result enters content addresses of the images whose inputs use it.

use serde_json::Value;

use super::git::{git, lines, repository, start_dir};
use super::{out, DataKind, OutTy, Outputs, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "git-repository",
        attrs: &[&[input("path").string()]],
        blocks: &[],
    },
    outputs: &[
        out("head", OutTy::String),
        out("branches", OutTy::List),
        out("tags", OutTy::List),
        out("is_clean", OutTy::Bool),
    ],
    resolve,
    summary: |outputs| Value::Object(outputs.clone().into_iter().collect()),
};

fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async move {
        let repo = repository(&start_dir(&request)).await?;
        let head = git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"])
            .await
            .or_else(|_| Ok::<_, String>("HEAD".to_owned()))?;
        let refs = |prefix: &'static str| {
            let repo = repo.clone();
            async move {
                git(
                    &repo,
                    &["for-each-ref", "--format=%(refname:short)", prefix],
                )
                .await
                .map(|t| lines(&t))
            }
        };
        let branches = refs("refs/heads").await?;
        let tags = refs("refs/tags").await?;
        let status = git(&repo, &["status", "--porcelain"]).await?;
        let list = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        let mut outputs = Outputs::new();
        outputs.insert("head".into(), Value::String(head));
        outputs.insert("branches".into(), list(branches));
        outputs.insert("tags".into(), list(tags));
        outputs.insert("is_clean".into(), Value::Bool(status.trim().is_empty()));
        Ok(Resolved::public(outputs))
    })
}
