//! Hashing functions on strings: `sha256`, `sha512`, `base64sha256` and `base64sha512` (the
//! `file*` variants that hash a file's bytes are in `files`).

use base64::Engine as _;
use hcl::eval::FuncArgs;
use sha2::{Digest, Sha256, Sha512};

use super::args::{sha256_hex, str_value, want_str};
use super::FnResult;

// ---------------------------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------------------------

pub(super) fn fn_sha256(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    Ok(str_value(sha256_hex(s.as_bytes())))
}

pub(super) fn fn_sha512(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    Ok(str_value(hex::encode(Sha512::digest(s.as_bytes()))))
}

pub(super) fn fn_base64sha256(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    Ok(str_value(
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes())),
    ))
}

pub(super) fn fn_base64sha512(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    Ok(str_value(
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(s.as_bytes())),
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::functions::test_util::*;

    #[test]
    fn hashes() {
        assert_eq!(
            j(r#"sha256("hello world")"#),
            r#""b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9""#
        );
        assert!(ev(r#"sha512("hello world")"#)
            .as_str()
            .unwrap()
            .starts_with("309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f"));
        assert_eq!(
            j(r#"base64sha256("hello world")"#),
            r#""uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=""#
        );
    }
}
