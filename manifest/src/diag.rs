//! Diagnostics: the errors and warnings the loader reports, each with file, line, column, a message and
//! a hint saying what to write instead.
//!
//! This module owns the shape and the text layout of a diagnostic (`convox.yml:12:5: error: …` plus an
//! indented `hint:` line). It must never decide *what* is wrong with a manifest; the decoder and the
//! validator do that and only hand their findings to [`Diags`].

use serde::Serialize;
use std::fmt;

/// A position in the original manifest text (before interpolation). Both numbers start at 1; the
/// column counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub column: usize,
}

impl Pos {
    /// The start of the file; used when nothing better is known (for example an empty file).
    pub const START: Pos = Pos { line: 1, column: 1 };
}

impl Default for Pos {
    fn default() -> Self {
        Pos::START
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The manifest cannot be used.
    Error,
    /// The manifest loads, but something is ignored, deprecated or suspicious.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about a manifest, pointing at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file name given to [`crate::load`] (for example `convox.yml`).
    pub file: String,
    /// Line in the original file, starting at 1.
    pub line: usize,
    /// Column in the original file (characters), starting at 1.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong. For the rules Convox has, this is Convox's own message text.
    pub message: String,
    /// What to write instead, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// The position this diagnostic points at.
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The result of a failed load: every error found (not just the first), plus the warnings seen on the
/// way. `Display` prints the errors, one per line (each followed by its hint line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Errors {
    /// The errors, in file order.
    pub errors: Vec<Diagnostic>,
    /// Warnings found before the load failed, in file order.
    pub warnings: Vec<Diagnostic>,
}

impl Errors {
    /// The error messages alone (without position or hint), in file order. Handy in tests and in
    /// places that want Convox's plain text.
    pub fn messages(&self) -> Vec<String> {
        self.errors.iter().map(|d| d.message.clone()).collect()
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// At most this many errors (and as many warnings) are kept for one file.
const MAX_DIAGNOSTICS: usize = 500;

/// Collects diagnostics for one file while loading.
#[derive(Debug)]
pub(crate) struct Diags {
    pub file: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Diags {
    pub fn new(file: &str) -> Self {
        Diags {
            file: file.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn make(
        &self,
        severity: Severity,
        pos: Pos,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            severity,
            message,
            hint,
        }
    }

    /// Record an error (identical duplicates, as from an alias used twice, are kept once).
    pub fn error(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        if self.errors.len() >= MAX_DIAGNOSTICS {
            return;
        }
        let d = self.make(Severity::Error, pos, message.into(), hint);
        if !self.errors.contains(&d) {
            self.errors.push(d);
        }
    }

    /// Record a warning.
    pub fn warn(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        if self.warnings.len() >= MAX_DIAGNOSTICS {
            return;
        }
        let d = self.make(Severity::Warning, pos, message.into(), hint);
        if !self.warnings.contains(&d) {
            self.warnings.push(d);
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Sort both lists by position (stable, so equal positions keep the order they were found in).
    pub fn sort(&mut self) {
        self.errors.sort_by_key(|d| (d.line, d.column));
        self.warnings.sort_by_key(|d| (d.line, d.column));
    }

    pub fn into_errors(mut self) -> Errors {
        self.sort();
        Errors {
            errors: self.errors,
            warnings: self.warnings,
        }
    }
}
