//! containerd's filter language for `Walk`, over snapshots: selectors
//! `fieldpath [op value]` joined by `,` (all must match); several filter
//! strings match when any does. Fields: `kind`, `name`, `parent`,
//! `labels.<key>` (a key may be quoted: `labels."containerd.io/snapshot.ref"`).
//! Operators: `==`, `!=`, `~=` (regular expression); a bare fieldpath tests
//! presence. Values are bare (`[^\s,]+`) or quoted with `"`, `/` or `|`.

use regex::Regex;

use crate::store::SnapshotRecord;

/// A parsed filter string: all selectors must match.
#[derive(Debug)]
pub struct Filter {
    selectors: Vec<Selector>,
}

#[derive(Debug)]
struct Selector {
    field: Vec<String>,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

/// A filter that does not parse; the message says where.
#[derive(Debug, thiserror::Error)]
#[error("invalid filter {filter:?}: {reason}")]
pub struct FilterError {
    filter: String,
    reason: String,
}

impl Filter {
    /// Parses one filter string.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let fail = |reason: &str| FilterError {
            filter: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut rest = text.trim();
        let mut selectors = Vec::new();
        while !rest.is_empty() {
            let (field, after) = fieldpath(rest).ok_or_else(|| fail("expected a field"))?;
            rest = after.trim_start();
            let test = if let Some(after) = rest.strip_prefix("==") {
                let (value, after) = value(after).ok_or_else(|| fail("expected a value"))?;
                rest = after;
                Test::Equal(value)
            } else if let Some(after) = rest.strip_prefix("!=") {
                let (value, after) = value(after).ok_or_else(|| fail("expected a value"))?;
                rest = after;
                Test::NotEqual(value)
            } else if let Some(after) = rest.strip_prefix("~=") {
                let (value, after) = value(after).ok_or_else(|| fail("expected a value"))?;
                rest = after;
                Test::Matches(Regex::new(&value).map_err(|e| fail(&e.to_string()))?)
            } else {
                Test::Present
            };
            selectors.push(Selector { field, test });
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(fail("expected ',' between selectors")),
            }
        }
        Ok(Self { selectors })
    }

    /// Whether `record` matches every selector.
    pub fn matches(&self, record: &SnapshotRecord) -> bool {
        self.selectors.iter().all(|s| {
            let value = field_of(record, &s.field);
            match (&s.test, value) {
                (Test::Present, value) => value.is_some(),
                (Test::Equal(want), Some(v)) => v == *want,
                (Test::NotEqual(want), Some(v)) => v != *want,
                (Test::NotEqual(_), None) => true,
                (Test::Matches(re), Some(v)) => re.is_match(&v),
                (_, None) => false,
            }
        })
    }
}

/// Whether `record` matches any of `filters` (no filters: everything).
pub fn any_matches(filters: &[Filter], record: &SnapshotRecord) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.matches(record))
}

fn field_of(record: &SnapshotRecord, field: &[String]) -> Option<String> {
    match field {
        [f] if f == "kind" => Some(record.kind.name().to_owned()),
        [f] if f == "name" => Some(record.key.clone()),
        [f] if f == "parent" => Some(record.parent.clone().unwrap_or_default()),
        [f, key] if f == "labels" => record.labels.get(key).cloned(),
        _ => None,
    }
}

/// A dotted fieldpath whose parts may be quoted; returns it and the rest.
fn fieldpath(text: &str) -> Option<(Vec<String>, &str)> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let (part, after) = match quoted(rest) {
            Some(found) => found,
            None => {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '/'))
                    .unwrap_or(rest.len());
                if end == 0 {
                    return None;
                }
                (rest[..end].to_owned(), &rest[end..])
            }
        };
        parts.push(part);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None => return Some((parts, after)),
        }
    }
}

/// A value: quoted, or bare up to whitespace or ','.
fn value(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if let Some(found) = quoted(text) {
        return Some(found);
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == ',')
        .unwrap_or(text.len());
    (end > 0).then(|| (text[..end].to_owned(), &text[end..]))
}

/// A `"…"`, `/…/` or `|…|` quoted string (`\` escapes the quote).
fn quoted(text: &str) -> Option<(String, &str)> {
    let quote = text
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '/' | '|'))?;
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, escaped) = chars.next()?;
                if escaped != quote {
                    out.push('\\');
                }
                out.push(escaped);
            }
            c if c == quote => return Some((out, &text[i + c.len_utf8()..])),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SnapshotKind;

    fn record(
        key: &str,
        kind: SnapshotKind,
        parent: &str,
        labels: &[(&str, &str)],
    ) -> SnapshotRecord {
        SnapshotRecord {
            id: 1,
            key: key.into(),
            kind,
            parent: (!parent.is_empty()).then(|| parent.into()),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            created_ns: 0,
            updated_ns: 0,
            usage: None,
            remote: None,
        }
    }

    #[test]
    fn matches_like_containerd() {
        let r = record(
            "sha256:aa",
            SnapshotKind::Committed,
            "sha256:bb",
            &[("containerd.io/snapshot.ref", "sha256:aa"), ("team", "x")],
        );
        let yes = [
            r#"labels."containerd.io/snapshot.ref"==sha256:aa,parent=="sha256:bb""#,
            "kind==committed",
            "name~=^sha256:a",
            "labels.team",
            "labels.team!=y, kind!=active",
            "labels.absent!=z",
        ];
        for f in yes {
            assert!(Filter::parse(f).unwrap().matches(&r), "{f}");
        }
        let no = [
            "kind==active",
            "labels.absent",
            "labels.team==y",
            "parent==\"\"",
            "name~=/^b/",
        ];
        for f in no {
            assert!(!Filter::parse(f).unwrap().matches(&r), "{f}");
        }
        let any: Vec<Filter> = ["kind==view", "labels.team==x"]
            .iter()
            .map(|f| Filter::parse(f).unwrap())
            .collect();
        assert!(any_matches(&any, &r), "several filters: any");
        assert!(any_matches(&[], &r), "no filter: all");
    }

    #[test]
    fn malformed_filters_are_errors() {
        for f in ["==x", "kind==", "kind==a b", "name~=(", "labels.\"open"] {
            assert!(Filter::parse(f).is_err(), "{f}");
        }
    }
}
