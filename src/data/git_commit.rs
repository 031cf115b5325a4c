//! `data "git-commit"` (the ethanmdavidson/git plugin): one commit of the
//! repository holding `path` (default `.`, the definition dir; the
//! repository is found walking up), selected by `commit_ish` (default
//! `HEAD`; a tag, a branch, a hash). Outputs: `hash`, `branches` (short
//! names of the branches pointing at it; `branch`, the first of them, as
//! older releases gave), `author` and `committer` (`Name
//! <email>`), `timestamp` (RFC 3339), `pgp_signature`, `message`,
//! `tree_hash`, `parent_hashes`. The hash enters content addresses.

use serde_json::Value;

use super::git::{git, lines, repository, start_dir};
use super::{config_str, out, DataKind, OutTy, Outputs, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "git-commit",
        attrs: &[&[input("path").string(), input("commit_ish").string()]],
        blocks: &[],
    },
    outputs: &[
        out("hash", OutTy::String),
        out("branches", OutTy::List),
        out("branch", OutTy::String),
        out("author", OutTy::String),
        out("committer", OutTy::String),
        out("timestamp", OutTy::String),
        out("pgp_signature", OutTy::String),
        out("message", OutTy::String),
        out("tree_hash", OutTy::String),
        out("parent_hashes", OutTy::List),
    ],
    resolve,
    summary: |outputs| super::output(outputs, "hash"),
};

fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async move {
        let repo = repository(&start_dir(&request)).await?;
        let wanted = config_str(request.config, "commit_ish").unwrap_or("HEAD");
        let hash = git(
            &repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{wanted}^{{commit}}"),
            ],
        )
        .await
        .map_err(|_| format!("no commit `{wanted}` in {}", repo.display()))?;
        let raw = git(&repo, &["cat-file", "commit", &hash]).await?;
        let commit = parse_commit(&raw);
        let branches = lines(
            &git(
                &repo,
                &["branch", "--points-at", &hash, "--format=%(refname:short)"],
            )
            .await?,
        );
        let mut outputs = Outputs::new();
        let s = |v: &str| Value::String(v.to_owned());
        let list = |v: &[String]| Value::Array(v.iter().map(|x| s(x)).collect());
        outputs.insert("hash".into(), s(&hash));
        // Older releases of the plugin gave one `branch`.
        outputs.insert(
            "branch".into(),
            s(branches.first().map(String::as_str).unwrap_or_default()),
        );
        outputs.insert("branches".into(), list(&branches));
        outputs.insert("author".into(), s(&commit.author));
        outputs.insert("committer".into(), s(&commit.committer));
        outputs.insert("timestamp".into(), s(&commit.timestamp));
        outputs.insert("pgp_signature".into(), s(&commit.signature));
        outputs.insert("message".into(), s(&commit.message));
        outputs.insert("tree_hash".into(), s(&commit.tree));
        outputs.insert("parent_hashes".into(), list(&commit.parents));
        Ok(Resolved::public(outputs))
    })
}

#[derive(Debug, Default, PartialEq)]
struct Commit {
    tree: String,
    parents: Vec<String>,
    author: String,
    committer: String,
    timestamp: String,
    signature: String,
    message: String,
}

/// A raw commit object (`git cat-file commit`): headers, a blank line, the
/// message. A header continued on the next lines (the signature) starts
/// them with a space.
fn parse_commit(raw: &str) -> Commit {
    let mut commit = Commit::default();
    let (head, message) = raw.split_once("\n\n").unwrap_or((raw, ""));
    commit.message = message.to_owned();
    let mut last: Option<&str> = None;
    for line in head.lines() {
        if let Some(more) = line.strip_prefix(' ') {
            if last == Some("gpgsig") {
                commit.signature.push('\n');
                commit.signature.push_str(more);
            }
            continue;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        last = Some(key);
        match key {
            "tree" => commit.tree = value.to_owned(),
            "parent" => commit.parents.push(value.to_owned()),
            "author" => commit.author = person(value).0,
            "committer" => {
                let (who, when) = person(value);
                commit.committer = who;
                commit.timestamp = when;
            }
            "gpgsig" => commit.signature = value.to_owned(),
            _ => {}
        }
    }
    commit
}

/// `Name <email> 1700000000 +0100` → (`Name <email>`, RFC 3339 in UTC).
fn person(value: &str) -> (String, String) {
    let Some(end) = value.rfind('>') else {
        return (value.to_owned(), String::new());
    };
    let who = value[..=end].to_owned();
    let when = value[end + 1..]
        .split_whitespace()
        .next()
        .and_then(|secs| secs.parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    (who, when)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_signed_merge_commit() {
        let raw = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
                   parent aaaa\nparent bbbb\n\
                   author A U Thor <a@example.com> 1700000000 +0100\n\
                   committer C O Mitter <c@example.com> 1700000060 +0000\n\
                   gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\n\
                   Merge things\n\nBody.\n";
        let c = parse_commit(raw);
        assert_eq!(c.tree, "4b825dc642cb6eb9a060e54bf8d69288fbee4904");
        assert_eq!(c.parents, ["aaaa", "bbbb"]);
        assert_eq!(c.author, "A U Thor <a@example.com>");
        assert_eq!(c.committer, "C O Mitter <c@example.com>");
        assert_eq!(c.timestamp, "2023-11-14T22:14:20Z");
        assert!(c
            .signature
            .starts_with("-----BEGIN PGP SIGNATURE-----\n\nabc\n"));
        assert_eq!(c.message, "Merge things\n\nBody.\n");
    }
}
