//! The anchors' recipe options, each tested for its law: mixup's λ ~ Beta(α, α) (statrs's
//! Beta CDF as the oracle, a Kolmogorov–Smirnov test), its inputs and labels mixed with the
//! same partner, its loss the cross-entropy of the mixed soft targets; label smoothing's loss
//! against −Σ((1 − ε)·one-hot + ε/C)·log softmax; cutout's zeroed region exactly one clipped
//! square per image, of the mean area a closed form gives. All seeded.
use deepres::data::loader::cutout;
use deepres::train::config::RunConfig;
use deepres::train::recipe::{beta_sample, prepare, Targets};
use statrs::distribution::{Beta, ContinuousCDF};
use tch::{Device, Kind, Tensor};

mod common;
use common::{one_line_error, run_in, serial};

fn cfg(sets: &[&str]) -> RunConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    RunConfig::from_overrides(&sets).unwrap()
}

/// KS statistic of `xs` against the CDF `f`.
fn ks(mut xs: Vec<f64>, f: impl Fn(f64) -> f64) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = xs.len() as f64;
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = f(x);
            (c - i as f64 / n).abs().max(((i + 1) as f64 / n - c).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn mixup_lambda_is_beta_alpha_alpha_and_seeded() {
    let _g = serial();
    let n = 3000;
    for alpha in [0.2, 1.0, 4.0] {
        tch::manual_seed(11);
        let xs: Vec<f64> = (0..n)
            .map(|_| beta_sample(alpha, Device::Cpu).double_value(&[]))
            .collect();
        let beta = Beta::new(alpha, alpha).unwrap();
        let d = ks(xs.clone(), |x| beta.cdf(x));
        // 1 % critical value of the one-sample KS test: 1.628/√n
        assert!(d < 1.628 / (n as f64).sqrt(), "α = {alpha}: KS D = {d}");
        tch::manual_seed(11);
        assert_eq!(beta_sample(alpha, Device::Cpu).double_value(&[]), xs[0]);
    }
    // a wrong law is rejected by the same test: Beta(α, α) with α = 1 is not Beta(2, 2)
    tch::manual_seed(3);
    let xs: Vec<f64> = (0..n)
        .map(|_| beta_sample(1.0, Device::Cpu).double_value(&[]))
        .collect();
    let other = Beta::new(2.0, 2.0).unwrap();
    assert!(ks(xs, |x| other.cdf(x)) > 1.628 / (n as f64).sqrt());
}

#[test]
fn mixup_mixes_inputs_and_labels_with_the_same_partner() {
    let _g = serial();
    let c = cfg(&["train.mixup_alpha=0.7"]);
    let b = 16;
    // image i is constant, equal to its label: the mixed image reveals the pair mixed
    let y = Tensor::arange(b, (Kind::Int64, Device::Cpu)).remainder(10);
    let x = y
        .to_kind(Kind::Float)
        .view([b, 1, 1, 1])
        .expand([b, 3, 4, 4], true)
        .contiguous();
    tch::manual_seed(5);
    let (mixed, t) = prepare(&c, x, &y);
    let (y_b, lam) = t.mix.as_ref().unwrap();
    let want = y.to_kind(Kind::Float) * lam + y_b.to_kind(Kind::Float) * (1.0 - lam);
    let got = mixed.mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float);
    assert!(got.allclose(&want, 1e-6, 1e-6, false), "{got} {want}");
    // y_b is a permutation of y
    let (mut s1, mut s2) = (
        Vec::<i64>::try_from(&y).unwrap(),
        Vec::<i64>::try_from(y_b).unwrap(),
    );
    s1.sort();
    s2.sort();
    assert_eq!(s1, s2);
    // the loss is the cross-entropy of the soft targets λ·e(y_a) + (1 − λ)·e(y_b) (computed
    // here as −Σ T log softmax), and with smoothing ε those targets are smoothed first
    tch::manual_seed(6);
    let logits = Tensor::randn([b, 10], (Kind::Float, Device::Cpu));
    for eps in [0.0, 0.1] {
        let t = Targets {
            y: y.shallow_clone(),
            mix: Some((y_b.shallow_clone(), lam.shallow_clone())),
            smoothing: eps,
        };
        let onehot = |y: &Tensor| y.one_hot(10).to_kind(Kind::Float) * (1.0 - eps) + eps / 10.0;
        let soft: Tensor = onehot(&y) * lam + onehot(y_b) * (1.0 - lam);
        let logp = logits.log_softmax(-1, Kind::Float);
        let want = -(soft * logp).sum(Kind::Float) / b as f64;
        let got = t.loss(&logits);
        assert!(
            (got.double_value(&[]) - want.double_value(&[])).abs() < 1e-5,
            "ε = {eps}"
        );
    }
    // accuracy: λ·[ŷ = y_a] + (1 − λ)·[ŷ = y_b]
    let pred = logits.argmax(-1, false);
    let l = lam.double_value(&[]);
    let want = l * pred.eq_tensor(&y).sum(Kind::Float).double_value(&[])
        + (1.0 - l) * pred.eq_tensor(y_b).sum(Kind::Float).double_value(&[]);
    assert!((t.correct(&logits).double_value(&[]) - want).abs() < 1e-5);
}

#[test]
fn cutout_zeroes_one_clipped_square_per_image() {
    let _g = serial();
    let (b, n, s) = (3000i64, 12i64, 5i64);
    tch::manual_seed(9);
    let x = Tensor::ones([b, 3, n, n], (Kind::Float, Device::Cpu));
    let out = cutout(&x, s);
    let zero = out.eq(0.0);
    // the same hole in every channel
    assert!(zero.select(1, 0).equal(&zero.select(1, 2)));
    let z = zero.select(1, 0); // [B, n, n]
    let rows = z.any_dim(2, false); // [B, n]
    let cols = z.any_dim(1, false);
    // exactly one rectangle: the zeros are the product of their rows and columns, each a
    // contiguous run of at most s
    let product = rows.unsqueeze(2).logical_and(&cols.unsqueeze(1));
    assert!(z.equal(&product));
    let runs = |m: &Tensor| {
        let v = Vec::<bool>::try_from(m.flatten(0, -1)).unwrap();
        v.chunks(n as usize)
            .map(|r| {
                let idx: Vec<usize> = (0..r.len()).filter(|&i| r[i]).collect();
                assert!(
                    idx.windows(2).all(|w| w[1] == w[0] + 1),
                    "not contiguous: {r:?}"
                );
                idx.len() as i64
            })
            .collect::<Vec<i64>>()
    };
    let (h, w) = (runs(&rows), runs(&cols));
    assert!(h.iter().chain(&w).all(|&k| (1..=s).contains(&k)));
    // mean area against the closed form: centre c uniform on 0..n, side clipped to
    // min(c + ⌈s/2⌉, n) − max(c − ⌊s/2⌋, 0); rows and columns independent
    let mean_len: f64 = (0..n)
        .map(|c| ((c + s - s / 2).min(n) - (c - s / 2).max(0)) as f64)
        .sum::<f64>()
        / n as f64;
    let area: Vec<f64> = h.iter().zip(&w).map(|(a, b)| (a * b) as f64).collect();
    let m = area.iter().sum::<f64>() / b as f64;
    let sd = (area.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (b - 1) as f64).sqrt();
    assert!(
        (m - mean_len * mean_len).abs() < 4.0 * sd / (b as f64).sqrt(),
        "{m} vs {}",
        mean_len * mean_len
    );
}

#[test]
fn bad_recipe_keys_get_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let base = [
        "train",
        "--device",
        "cpu",
        "--set",
        "data.name=synthetic",
        "--set",
        "model.depth=8",
    ];
    let cases = [
        (
            "train.mixup_alpha=0",
            "train.mixup_alpha: must be a positive number",
        ),
        (
            "train.mixup_alpha=-1",
            "train.mixup_alpha: must be a positive number",
        ),
        (
            "train.label_smoothing=1.5",
            "train.label_smoothing: must be in [0, 1)",
        ),
        (
            "data.augment.cutout=40",
            "data.augment.cutout: 40 is larger than the 32×32 images",
        ),
        (
            "data.augment.cutout=0",
            "data.augment.cutout: the square's side must be ≥ 1",
        ),
        ("train.mixup=1", "mixup"),
        ("log.tensorbord=true", "tensorbord"),
    ];
    for (set, want) in cases {
        let mut args = base.to_vec();
        args.extend(["--set", set]);
        let e = one_line_error(&run_in(&args, tmp.path()));
        assert!(e.contains(want), "{set}: {e}");
    }
    assert!(!tmp.path().join("runs").exists(), "nothing written");
}

#[test]
fn a_run_with_mixup_cutout_and_smoothing_trains_and_is_seeded() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let c = cfg(&[
            &format!("name={name}"),
            &format!("out_dir={}", tmp.path().display()),
            "device=cpu",
            "data.name=synthetic",
            "data.synthetic_train=512",
            "data.synthetic_test=256",
            "model.depth=8",
            "train.epochs=2",
            "train.batch_size=64",
            "train.mixup_alpha=1.0",
            "train.label_smoothing=0.1",
            "data.augment.cutout=8",
        ]);
        deepres::train::run(
            &c,
            &deepres::train::RunOptions {
                quiet: true,
                ..Default::default()
            },
        )
        .unwrap();
        std::fs::read_to_string(tmp.path().join(name).join("metrics.csv")).unwrap()
    };
    let (a, b) = (run("a"), run("b"));
    let cols = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split(',').take(8).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(cols(&a), cols(&b), "same seed, same curve");
    let last: Vec<&str> = a.lines().last().unwrap().split(',').collect();
    assert!(last[2].parse::<f64>().unwrap().is_finite(), "{a}");
}

/// A pack's losses and numbers right, member by member (`member_losses`: one cross-entropy over
/// all members' rows when they share ε, member by member when not), against the closed form
/// computed here in f64: ℓ_p = mean_i −Σ_k ((1 − ε_p)·[k = y_pi] + ε_p/K)·log softmax(z_pi)_k,
/// and right_p = #{i : argmax_k z_pi = y_pi}. A mean over the wrong axis or labels matched to
/// another member's rows fails it.
#[test]
fn a_packs_losses_are_each_members_own() {
    use deepres::train::recipe::member_losses;
    let (p, b, k) = (3i64, 5i64, 4i64);
    tch::manual_seed(11);
    let logits = Tensor::randn([p, b, k], (Kind::Float, Device::Cpu)) * 2.0;
    let y = Tensor::randint(k, [p, b], (Kind::Int64, Device::Cpu));
    let z = Vec::<f64>::try_from(logits.to_kind(Kind::Double).flatten(0, -1)).unwrap();
    let labels = Vec::<i64>::try_from(y.flatten(0, -1)).unwrap();
    for eps in [[0.0; 3], [0.1; 3], [0.0, 0.1, 0.2]] {
        let targets: Vec<Targets> = (0..p)
            .map(|m| Targets {
                smoothing: eps[m as usize],
                ..Targets::hard(&y.get(m))
            })
            .collect();
        let (loss, right) = member_losses(&logits, &targets);
        let loss = Vec::<f64>::try_from(loss.to_kind(Kind::Double)).unwrap();
        let right = Vec::<f64>::try_from(right.to_kind(Kind::Double)).unwrap();
        for m in 0..p as usize {
            let (mut want, mut hits) = (0.0, 0.0);
            for i in 0..b as usize {
                let row = &z[(m * b as usize + i) * k as usize..][..k as usize];
                let label = labels[m * b as usize + i] as usize;
                let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
                want -= (0..k as usize)
                    .map(|c| {
                        let q =
                            (1.0 - eps[m]) * f64::from(u8::from(c == label)) + eps[m] / k as f64;
                        q * (row[c] - lse)
                    })
                    .sum::<f64>()
                    / b as f64;
                let top = (0..k as usize)
                    .max_by(|&a, &c| row[a].total_cmp(&row[c]))
                    .unwrap();
                hits += f64::from(u8::from(top == label));
            }
            assert!(
                (loss[m] - want).abs() <= 1e-5 * want.abs().max(1.0),
                "member {m}, ε {eps:?}: loss {} against {want}",
                loss[m]
            );
            assert_eq!(right[m], hits, "member {m}, ε {eps:?}: number right");
        }
    }
}
