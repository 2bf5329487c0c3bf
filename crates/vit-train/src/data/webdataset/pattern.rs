//! Shard names as `webdataset` (and the `braceexpand` package it uses) expand them:
//! `train-{000000..000146}.tar` (a numeric range, zero-padded to its bounds' width), `{a,b}`
//! (alternatives), several groups in one name.

use anyhow::{Result, bail};

/// All the names `pattern` stands for, in order.
pub fn expand(pattern: &str) -> Result<Vec<String>> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            bail!("shard pattern `{pattern}`: `}}` without `{{`");
        }
        return Ok(vec![pattern.to_string()]);
    };
    let Some(len) = pattern[open..].find('}') else {
        bail!("shard pattern `{pattern}`: `{{` without `}}`");
    };
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..open + len],
        &pattern[open + len + 1..],
    );
    let choices = match body.split_once("..") {
        Some((a, b)) => {
            range(a, b).map_err(|e| anyhow::anyhow!("shard pattern `{pattern}`: {e}"))?
        }
        None if body.contains(',') => body.split(',').map(str::to_string).collect(),
        None => bail!(
            "shard pattern `{pattern}`: `{{{body}}}` is neither a range `{{A..B}}` nor a list `{{a,b}}`"
        ),
    };
    let rest = expand(tail)?;
    let mut out = Vec::with_capacity(choices.len() * rest.len());
    for c in &choices {
        for r in &rest {
            out.push(format!("{head}{c}{r}"));
        }
    }
    Ok(out)
}

/// `A..B` inclusive, each number as wide as the wider bound when a bound is zero-padded.
fn range(a: &str, b: &str) -> Result<Vec<String>, String> {
    let parse = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("`{s}` in `{{{a}..{b}}}` is not a number"))
    };
    let (lo, hi) = (parse(a)?, parse(b)?);
    if lo > hi {
        return Err(format!("`{{{a}..{b}}}` counts down"));
    }
    if hi - lo > 10_000_000 {
        return Err(format!("`{{{a}..{b}}}` names more than 10 million shards"));
    }
    let padded = (a.len() > 1 && a.starts_with('0')) || (b.len() > 1 && b.starts_with('0'));
    let width = if padded { a.len().max(b.len()) } else { 0 };
    Ok((lo..=hi).map(|n| format!("{n:0width$}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_as_braceexpand_does() {
        assert_eq!(
            expand("a-{000..002}.tar").unwrap(),
            ["a-000.tar", "a-001.tar", "a-002.tar"]
        );
        assert_eq!(expand("{8..10}").unwrap(), ["8", "9", "10"]);
        assert_eq!(
            expand("{x,y}-{0..1}.tar").unwrap(),
            ["x-0.tar", "x-1.tar", "y-0.tar", "y-1.tar"]
        );
        assert_eq!(expand("plain.tar").unwrap(), ["plain.tar"]);
        for bad in ["a-{1..x}.tar", "a-{3..1}", "a-{1..2", "a}", "a-{b}.tar"] {
            let e = expand(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
