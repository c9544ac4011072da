//! Line-oriented text documents (the scope catalog and the route policy): one entry per
//! line, fields separated by spaces or tabs, `#` starts a comment. Operators edit these
//! by hand, so every error names the line it is on, and a document with any error is
//! refused whole.

/// Largest document accepted.
pub const MAX_DOCUMENT: usize = 256 * 1024;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", line.map(|n| format!("line {n}: ")).unwrap_or_default())]
pub struct DocumentError {
    /// The 1-based line at fault; `None` when the fault is the document as a whole.
    pub line: Option<usize>,
    /// What is wrong. Quotes at most a short piece of the offending field.
    pub reason: String,
}

impl DocumentError {
    /// An error on line `line`.
    pub fn at(line: usize, reason: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            reason: reason.into(),
        }
    }

    /// An error about the whole document.
    pub fn whole(reason: impl Into<String>) -> Self {
        Self {
            line: None,
            reason: reason.into(),
        }
    }
}

/// One non-blank, non-comment line: its 1-based number and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// 1-based line number.
    pub line: usize,
    /// Whitespace-separated fields, at least one.
    pub fields: Vec<&'a str>,
}

/// The entries of `text`, or the first line that cannot be read.
pub fn entries(text: &str) -> Result<Vec<Entry<'_>>, DocumentError> {
    if text.len() > MAX_DOCUMENT {
        return Err(DocumentError::whole(format!(
            "document larger than {} KiB",
            MAX_DOCUMENT / 1024
        )));
    }
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.chars().any(|c| c.is_control() && c != '\t') {
            return Err(DocumentError::at(line, "control character"));
        }
        let content = raw.split_once('#').map_or(raw, |(before, _)| before);
        let fields: Vec<&str> = content
            .split([' ', '\t'])
            .filter(|f| !f.is_empty())
            .collect();
        if !fields.is_empty() {
            out.push(Entry { line, fields });
        }
    }
    Ok(out)
}

/// A field quoted for an error message, cut short so errors stay small.
pub fn quote(field: &str) -> String {
    let short: String = field.chars().take(64).collect();
    format!("{short:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_skip_blanks_and_comments_and_keep_line_numbers() {
        let text = "# header\n\nGET /a  x:read # trailing\n\t POST\t/b y:write\n";
        let got = entries(text).unwrap();
        assert_eq!(
            got,
            vec![
                Entry {
                    line: 3,
                    fields: vec!["GET", "/a", "x:read"]
                },
                Entry {
                    line: 4,
                    fields: vec!["POST", "/b", "y:write"]
                },
            ]
        );
    }

    #[test]
    fn bad_documents_name_the_line() {
        let err = entries("ok\nbad\u{7}\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.to_string(), "line 2: control character");
        let huge = "#".repeat(MAX_DOCUMENT + 1);
        assert_eq!(entries(&huge).unwrap_err().line, None);
        assert_eq!(quote(&"x".repeat(100)).len(), 66);
    }
}
