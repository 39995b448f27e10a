//! Reports from finished runs: [`compare`] joins two runs' metrics.csv per epoch
//! (normalized vs unnormalized) into one CSV and a Markdown table.
pub mod compare;
