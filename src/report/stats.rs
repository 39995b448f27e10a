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

/// Percentile bootstrap: `stat` of `resamples` resamples of `items` (drawn with replacement,
/// the same size; deterministic in `seed`) and, for each of its K values, the 2.5 % and 97.5 %
/// quantiles of the resampled values (resamples where `stat` is None are left out). None
/// without items or when fewer than half the resamples give a value.
pub fn bootstrap95<T: Copy, const K: usize>(
    items: &[T],
    resamples: usize,
    seed: u64,
    stat: impl Fn(&[T]) -> Option<[f64; K]>,
) -> Option<[(f64, f64); K]> {
    use rand::{Rng, SeedableRng};
    use statrs::statistics::{Data, OrderStatistics};
    if items.is_empty() {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut values: [Vec<f64>; K] = std::array::from_fn(|_| Vec::with_capacity(resamples));
    let mut sample = Vec::with_capacity(items.len());
    for _ in 0..resamples {
        sample.clear();
        sample.extend((0..items.len()).map(|_| items[rng.gen_range(0..items.len())]));
        if let Some(v) = stat(&sample) {
            for (acc, x) in values.iter_mut().zip(v) {
                acc.push(x);
            }
        }
    }
    if values[0].len() * 2 < resamples.max(1) {
        return None;
    }
    Some(values.map(|v| {
        let mut data = Data::new(v);
        (data.quantile(0.025), data.quantile(0.975))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bootstrap interval of a mean against the closed form ±1.96·σ/√n (σ = 1, n = 2000):
    /// half-width 0.0438 within 15 %, centred on the sample mean; a median of a constant sample
    /// has a zero-width interval.
    #[test]
    fn bootstrap_interval_of_a_mean_matches_the_normal_one() {
        tch::manual_seed(7);
        let xs = Vec::<f64>::try_from(tch::Tensor::randn(
            [2000],
            (tch::Kind::Double, tch::Device::Cpu),
        ))
        .unwrap();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let [(lo, hi)] = bootstrap95(&xs, 2000, 1, |s| {
            Some([s.iter().sum::<f64>() / s.len() as f64])
        })
        .unwrap();
        let half = (hi - lo) / 2.0;
        let expected = 1.959964 / (2000f64).sqrt();
        assert!(
            (half / expected - 1.0).abs() < 0.15,
            "half-width {half} vs {expected}"
        );
        assert!(
            ((lo + hi) / 2.0 - mean).abs() < 0.2 * expected,
            "{lo} {hi} {mean}"
        );
        let [(a, b)] = bootstrap95(&[3.0; 10], 200, 1, |s| Some([s[0]])).unwrap();
        assert_eq!((a, b), (3.0, 3.0));
        assert!(bootstrap95(&[] as &[f64], 10, 1, |_| Some([0.0])).is_none());
    }

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
