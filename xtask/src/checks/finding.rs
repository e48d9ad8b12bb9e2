//! What a check reports: findings, and the outcome of one check.

/// Something a check found: where (`file:line`, or empty) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `path:line` relative to the workspace root, or a command name.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl Finding {
    /// A finding at `location`.
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            message: message.into(),
        }
    }
}

/// What one check concluded.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Findings that fail the check.
    pub failures: Vec<Finding>,
    /// Findings reported without failing.
    pub warnings: Vec<Finding>,
}

impl Outcome {
    /// An outcome failing with `failures`.
    pub fn failing(failures: Vec<Finding>) -> Self {
        Self {
            failures,
            warnings: Vec::new(),
        }
    }
}
