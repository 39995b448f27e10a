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

/// The checks of one figure (none for figures that only draw), and the paper's claims this
/// scale cannot show (said as such, neither passed nor failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acceptance {
    pub checks: Vec<Check>,
    pub not_shown: Vec<String>,
    /// Measured comparisons the claim asks to report, not to pass (e.g. BN + τ − BN with its
    /// interval at smoke size).
    pub measured: Vec<String>,
}

impl Acceptance {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    /// A measured comparison, reported beside the checks.
    pub fn measured(&mut self, what: impl Into<String>) {
        self.measured.push(what.into());
    }

    /// A claim this run cannot show, with the measured value and why.
    pub fn not_shown(&mut self, what: impl Into<String>) {
        self.not_shown.push(what.into());
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.passed()).collect()
    }

    /// The checks, one line each, under a heading (empty without checks).
    pub fn lines(&self) -> String {
        if self.checks.is_empty() && self.measured.is_empty() && self.not_shown.is_empty() {
            return String::new();
        }
        let mut text = String::from("\nAcceptance:\n");
        for c in &self.checks {
            let _ = writeln!(text, "{}", c.line());
        }
        for m in &self.measured {
            let _ = writeln!(text, "- measured: {m}");
        }
        for n in &self.not_shown {
            let _ = writeln!(text, "- not shown: {n}");
        }
        text
    }

    /// The figure's last line: `Acceptance: all N checks pass` or `Acceptance: FAILED ...`
    /// naming each failed check; without checks `Acceptance: no check ran; ...` when a claim
    /// is not shown, else empty.
    pub fn verdict(&self) -> String {
        let failed = self.failed();
        let not_shown = match self.not_shown.len() {
            0 => String::new(),
            1 => "; 1 claim not shown by this run (above)".to_string(),
            k => format!("; {k} claims not shown by this run (above)"),
        };
        match (self.checks.len(), failed.len()) {
            (0, _) if self.not_shown.is_empty() => String::new(),
            (0, _) => format!("Acceptance: no check ran{not_shown}"),
            (n, 0) => format!("Acceptance: all {n} checks pass{not_shown}"),
            (n, k) => {
                let names: Vec<String> = failed
                    .iter()
                    .map(|c| format!("{} = {:.3} not in [{}, {}]", c.name, c.value, c.lo, c.hi))
                    .collect();
                format!("Acceptance: FAILED {k} of {n} checks: {}", names.join("; "))
            }
        }
    }

    /// The text that closes a figure: the checks (and the measured and not-shown lines), then
    /// the verdict as the last line (empty without any).
    pub fn closing(&self) -> String {
        match self.verdict().as_str() {
            "" => self.lines(),
            v => format!("{}\n{v}\n", self.lines()),
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

impl FigureOutput {
    /// `body` closed by the checks ([`Acceptance::closing`]) as `dir/README.md`, and the checks
    /// as `dir/acceptance.csv` (removed when there are none, so that no verdict of an earlier
    /// run stays beside this one).
    pub fn write(body: String, acceptance: Acceptance, dir: &Path) -> Result<FigureOutput> {
        let text = body + &acceptance.closing();
        write_atomic(&dir.join("README.md"), &text)?;
        if acceptance.checks.is_empty() {
            let _ = std::fs::remove_file(dir.join(FILE));
        }
        acceptance.write(dir)?;
        Ok(FigureOutput { text, acceptance })
    }
}
