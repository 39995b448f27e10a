//! A figure's acceptance checks as a result, not a remark: each check is a measured value and
//! the interval the paper's claim puts it in; the figure's text ends with one line that says
//! whether all pass, `acceptance.csv` records them for scripts, and `deepres` exits with
//! [`EXIT_CODE`] when one fails (docs/cli.md).
use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

use crate::util::write_atomic;

/// The exit status of a figure whose acceptance check failed (2 is a usage or input error).
pub const EXIT_CODE: u8 = 3;

/// The file, next to the figure, that records the checks.
pub const FILE: &str = "acceptance.csv";

/// One claim: `value` is expected in [lo, hi].
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Check {
    pub fn new(name: impl Into<String>, value: f64, lo: f64, hi: f64) -> Check {
        Check {
            name: name.into(),
            value,
            lo,
            hi,
        }
    }

    /// Inside the interval (a NaN never passes).
    pub fn passed(&self) -> bool {
        self.value >= self.lo && self.value <= self.hi
    }

    /// `- name: value (expected in [lo, hi]: yes|NO)`.
    pub fn line(&self) -> String {
        let verdict = if self.passed() { "yes" } else { "NO" };
        format!(
            "- {}: {:.3} (expected in [{}, {}]: {verdict})",
            self.name, self.value, self.lo, self.hi
        )
    }
}

/// The checks of one figure (none for figures that only draw).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acceptance {
    pub checks: Vec<Check>,
}

impl Acceptance {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }

    /// The checks, one line each, under a heading (empty without checks).
    pub fn lines(&self) -> String {
        if self.checks.is_empty() {
            return String::new();
        }
        let mut text = String::from("\nAcceptance:\n");
        for c in &self.checks {
            let _ = writeln!(text, "{}", c.line());
        }
        text
    }

    /// The figure's last line: `Acceptance: all N checks pass` or `Acceptance: FAILED ...`
    /// naming each failed check (empty without checks).
    pub fn verdict(&self) -> String {
        let failed = self.failed();
        match (self.checks.len(), failed.len()) {
            (0, _) => String::new(),
            (n, 0) => format!("Acceptance: all {n} checks pass"),
            (n, k) => {
                let names: Vec<String> = failed
                    .iter()
                    .map(|c| format!("{} = {:.3} not in [{}, {}]", c.name, c.value, c.lo, c.hi))
                    .collect();
                format!("Acceptance: FAILED {k} of {n} checks: {}", names.join("; "))
            }
        }
    }

    /// Writes `dir/acceptance.csv` (check, value, lo, hi, passed); nothing without checks.
    pub fn write(&self, dir: &Path) -> Result<()> {
        if self.checks.is_empty() {
            return Ok(());
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["check", "value", "lo", "hi", "passed"])?;
        for c in &self.checks {
            w.write_record([
                c.name.clone(),
                format!("{:e}", c.value),
                c.lo.to_string(),
                c.hi.to_string(),
                c.passed().to_string(),
            ])?;
        }
        write_atomic(&dir.join(FILE), w.into_inner()?)
    }

    /// Ok when every check passes, else the error that makes `deepres` exit with
    /// [`EXIT_CODE`].
    pub fn into_result(self) -> Result<(), Failed> {
        if self.passed() {
            Ok(())
        } else {
            Err(Failed(self.verdict()))
        }
    }
}

/// A figure ran to the end but its result is not the paper's (see [`Acceptance::verdict`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

/// What a figure run gives back: its text (printed, and its README.md) and its checks.
#[derive(Debug, Clone, Default)]
pub struct FigureOutput {
    pub text: String,
    pub acceptance: Acceptance,
}
