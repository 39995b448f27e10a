//! Statistics over seeds: the mean, the sample standard deviation and the 95 % confidence
//! interval of the mean (Student t, n − 1 degrees of freedom), and the difference of two
//! variants paired by seed with its interval and two-sided p-value (the paired t-test). No
//! interval from fewer than two values.
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean, sample std and n of `xs`, and the 95 % interval of the mean when n ≥ 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub ci: Option<(f64, f64)>,
}

/// t_{0.975, df}.
fn t975(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .expect("df > 0")
        .inverse_cdf(0.975)
}

impl Estimate {
    /// None for no values.
    pub fn of(xs: &[f64]) -> Option<Estimate> {
        let n = xs.len();
        if n == 0 {
            return None;
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Some(Estimate {
                n,
                mean,
                std: 0.0,
                ci: None,
            });
        }
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        let std = var.sqrt();
        let half = t975(n as f64 - 1.0) * std / (n as f64).sqrt();
        Some(Estimate {
            n,
            mean,
            std,
            ci: Some((mean - half, mean + half)),
        })
    }

    /// Whether `x` lies in the interval (None without one).
    pub fn contains(&self, x: f64) -> Option<bool> {
        self.ci.map(|(lo, hi)| x >= lo && x <= hi)
    }

    /// `7.12 ± 0.10, CI [6.95, 7.29] (n = 5)`; `7.12 (n = 1, no interval)`.
    pub fn text(&self) -> String {
        match self.ci {
            Some((lo, hi)) => format!(
                "{:.2} ± {:.2}, CI [{lo:.2}, {hi:.2}] (n = {})",
                self.mean, self.std, self.n
            ),
            None => format!("{:.2} (n = 1, no interval)", self.mean),
        }
    }
}

/// The mean of b − a over the seeds both have, its interval and the paired t-test's p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    pub diff: Estimate,
    /// Two-sided p-value of "the mean difference is 0" (None when n < 2 or all differences
    /// are equal, where the t statistic is undefined).
    pub p: Option<f64>,
}

/// `a` and `b` as (seed, value); pairs are the seeds present in both. None without a pair.
pub fn paired(a: &[(u64, f64)], b: &[(u64, f64)]) -> Option<Paired> {
    let d: Vec<f64> = b
        .iter()
        .filter_map(|(s, y)| a.iter().find(|(t, _)| t == s).map(|(_, x)| y - x))
        .collect();
    let diff = Estimate::of(&d)?;
    let p = (diff.n >= 2 && diff.std > 0.0).then(|| {
        let t = diff.mean / (diff.std / (diff.n as f64).sqrt());
        let dist = StudentsT::new(0.0, 1.0, diff.n as f64 - 1.0).expect("df > 0");
        2.0 * (1.0 - dist.cdf(t.abs()))
    });
    Some(Paired { diff, p })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against published tables: t_{0.975,4} = 2.776, t_{0.975,1} = 12.706; and a paired
    /// t-test worked by hand (differences 1, 2, 3: mean 2, sd 1, t = 3.464, df 2, p = 0.0742).
    #[test]
    fn student_t_values_and_a_paired_test() {
        assert!((t975(4.0) - 2.776445).abs() < 1e-5);
        assert!((t975(1.0) - 12.706205).abs() < 1e-4);
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let (lo, hi) = e.ci.unwrap();
        let half = 2.776445 * (2.5f64).sqrt() / 5f64.sqrt();
        assert!((lo - (3.0 - half)).abs() < 1e-5 && (hi - (3.0 + half)).abs() < 1e-5);
        assert_eq!(Estimate::of(&[7.0]).unwrap().ci, None);
        let p = paired(
            &[(0, 10.0), (1, 10.0), (2, 10.0), (9, 1.0)],
            &[(0, 11.0), (1, 12.0), (2, 13.0)],
        )
        .unwrap();
        assert_eq!(p.diff.n, 3);
        assert!((p.diff.mean - 2.0).abs() < 1e-12);
        assert!((p.p.unwrap() - 0.07417990).abs() < 1e-6, "{:?}", p.p);
    }
}
