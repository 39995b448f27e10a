//! The stability probe on small depths: without BN, τ = 1 grows exponentially with L while
//! τ = 1/√L stays of order 1 and τ = 1/L tends to a constant (Zhang et al. 2022, arXiv:1903.07120).
use deepres::data::DatasetName;
use deepres::model::config::Norm;
use deepres::papers::zhang2022::probe::{self, fit, ProbeData, ProbeModel, ProbeRow, ProbeSpec};

mod common;
use common::serial;

fn spec(model: ProbeModel, depths: Vec<i64>, norms: Vec<Norm>) -> ProbeSpec {
    ProbeSpec {
        model,
        depths,
        taus: "one,inv_sqrt,inv"
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect(),
        norms,
        seeds: vec![0, 1],
        batch: 16,
        width: 64,
        data: ProbeData::Named(DatasetName::Synthetic),
        data_root: "data".into(),
        device: tch::Device::Cpu,
    }
}

fn series(rows: &[ProbeRow], norm: Norm, rule: &str) -> Vec<(i64, f64, f64)> {
    let mut v: Vec<_> = rows
        .iter()
        .filter(|r| r.norm == norm && r.tau_rule == rule && r.seed == 0)
        .map(|r| (r.blocks, r.forward_ratio, r.backward_ratio))
        .collect();
    v.sort_by_key(|r| r.0);
    v
}

#[test]
fn resnet_without_bn_tau_one_explodes_and_inv_sqrt_stays_bounded() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("probe.csv");
    let rows = probe::run(
        &spec(
            ProbeModel::Resnet,
            vec![8, 20, 56, 110],
            vec![Norm::None, Norm::Bn],
        ),
        &csv,
        true,
    )
    .unwrap();
    assert_eq!(rows.len(), 4 * 3 * 2 * 2);
    let one = series(&rows, Norm::None, "one");
    let sqrt = series(&rows, Norm::None, "inv_sqrt");
    let inv = series(&rows, Norm::None, "inv");
    eprintln!("one {one:?}\ninv_sqrt {sqrt:?}\ninv {inv:?}");
    // τ = 1: ratio multiplies by a constant per block: from L = 3 to 54 it grows by orders of magnitude
    assert!(
        one[3].1 / one[0].1 > 1e3,
        "τ = 1 forward must explode: {one:?}"
    );
    assert!(
        one[3].2 / one[0].2 > 1e3,
        "τ = 1 backward must explode: {one:?}"
    );
    // τ = 1/√L and 1/L: of order 1 at every depth
    for (l, f, b) in sqrt.iter().chain(inv.iter()) {
        assert!(
            *f > 0.05 && *f < 20.0 && *b > 0.05 && *b < 20.0,
            "L={l}: forward {f} backward {b}"
        );
    }
    // the fitted table says so
    let fits = fit::fit_rows(&rows);
    let get = |norm: &str, rule: &str| {
        fits.iter()
            .find(|f| f.norm == norm && f.tau_rule == rule)
            .unwrap()
            .clone()
    };
    assert_eq!(get("none", "one").forward_fit.label(), "exponential");
    assert!(get("none", "inv_sqrt").forward_fit.power.abs() < 0.3);
    // a rerun resumes: nothing is measured twice
    let again = probe::run(
        &spec(
            ProbeModel::Resnet,
            vec![8, 20, 56, 110],
            vec![Norm::None, Norm::Bn],
        ),
        &csv,
        true,
    )
    .unwrap();
    assert_eq!(again.len(), rows.len());
}

#[test]
fn fc_resnet_threshold() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("probe.csv");
    let rows = probe::run(
        &spec(ProbeModel::Fc, vec![4, 16, 64, 256, 1024], vec![Norm::None]),
        &csv,
        true,
    )
    .unwrap();
    let one = series(&rows, Norm::None, "one");
    let sqrt = series(&rows, Norm::None, "inv_sqrt");
    let inv = series(&rows, Norm::None, "inv");
    eprintln!("one {one:?}\ninv_sqrt {sqrt:?}\ninv {inv:?}");
    // τ = 1: ‖h‖² roughly doubles per block: overflow (inf/NaN, written as such) by L = 1024
    assert!(!one[4].1.is_finite() || one[4].1 > 1e30, "{one:?}");
    assert!(one[2].1 > 1e6, "{one:?}");
    // τ = 1/√L bounded, τ= 1/L → a constant close to 1
    for (l, f, _) in &sqrt {
        assert!(*f > 0.5 && *f < 10.0, "inv_sqrt L={l}: {f}");
    }
    assert!(
        (inv[4].1 - inv[3].1).abs() < 0.05 * inv[3].1,
        "τ = 1/L tends to a constant: {inv:?}"
    );
    // NaN/inf survive the CSV round trip
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with(
        "dataset,model,width,batch,depth,blocks,norm,tau_rule,tau,seed,forward_ratio,backward_ratio,probe_version\n"
    ), "{text}");
}

#[test]
fn tau_rule_parsing() {
    let t: probe::TauSpec = "power:0.45".parse().unwrap();
    assert_eq!(t.label, "power:0.45");
    assert!(("nope".parse::<probe::TauSpec>())
        .unwrap_err()
        .to_string()
        .contains("power:β"));
    assert!(("power".parse::<probe::TauSpec>()).is_err());
}

/// The fully connected ResNet is the τ paper's eq. (1), h_0 = relu(A x),
/// h_l = relu(h_{l-1} + τ W_l h_{l-1}): its ratios equal those of an independent PyTorch
/// implementation of that equation (tests/oracles/fc_probe.py) drawing the same weights from
/// the same seeded generator, to a relative 1e-4. A pre-activation block
/// h_{l-1} + τ W_l relu(h_{l-1}), or h_0 without its relu, changes them by far more.
#[test]
fn fc_ratios_match_the_papers_equation_in_pytorch() {
    let _g = serial();
    tch::manual_seed(3);
    let x = tch::Tensor::rand([12, 3, 6, 6], (tch::Kind::Float, tch::Device::Cpu));
    let y = tch::Tensor::randint(10, [12], (tch::Kind::Int64, tch::Device::Cpu));
    let mut cases = Vec::new();
    for (blocks, tau, seed) in [
        (5, 1.0, 0),
        (20, 0.5, 1),
        (40, 1.0 / 40f64.sqrt(), 2),
        (8, 0.0, 3),
    ] {
        let (f, b) = probe::fc_ratios(&x, &y, blocks, tau, 32, seed, 10);
        assert!(
            f.is_finite() && b.is_finite(),
            "L={blocks} τ={tau}: {f} {b}"
        );
        cases.extend([blocks as f64, tau, seed as f64, 32.0, 10.0, f, b]);
    }
    let cases = tch::Tensor::from_slice(&cases).view([-1, 7]);
    let dir = tempfile::tempdir().unwrap();
    tch::Tensor::write_safetensors(
        &[("x", &x), ("y", &y), ("cases", &cases)],
        dir.path().join("tensors.safetensors"),
    )
    .unwrap();
    let out = common::python_oracle("fc_probe.py", &[dir.path().to_str().unwrap()]);
    eprintln!("{out}");
}

/// The τ paper's sharp threshold on the CIFAR ResNet, read off the fitted growth labels:
/// τ = L^(-1/4) (= L^(-1/2+c), c = 1/4) makes the forward ratio grow with L, τ = 1/√L keeps
/// it bounded, with and without BN (without BN ratio² ≈ (1 + τ²)^L as for the fc net: e^√L
/// against e; with BN each block adds a unit-variance branch, ratio² ≈ 1 + τ²·L: √L against 2).
#[test]
fn conv_resnet_threshold_labels_with_and_without_bn() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("probe.csv");
    let mut s = spec(
        ProbeModel::Resnet,
        vec![8, 20, 56, 110],
        vec![Norm::None, Norm::Bn],
    );
    s.taus = "power:0.25,inv_sqrt"
        .split(',')
        .map(|t| t.parse().unwrap())
        .collect();
    let rows = probe::run(&s, &csv, true).unwrap();
    let fits = fit::fit_rows(&rows);
    for norm in ["none", "bn"] {
        for (rule, growing) in [("power:0.25", true), ("inv_sqrt", false)] {
            let f = fits
                .iter()
                .find(|f| f.norm == norm && f.tau_rule == rule)
                .unwrap();
            let label = f.forward_fit.label();
            eprintln!(
                "{norm} {rule}: {label} p = {:.3} {:?}",
                f.forward_fit.power, f.forward
            );
            if growing {
                assert!(
                    matches!(label, "exponential" | "polynomial" | "overflow"),
                    "{norm} {rule} must grow: {label} {:?}",
                    f.forward
                );
            } else {
                assert_eq!(label, "bounded", "{norm} {rule}: {:?}", f.forward);
            }
        }
    }
}

/// probe.csv names the dataset, width, batch and probe version of every row; a rerun resumes
/// only into a file of the same setting: another batch size, fc width or dataset, and a file of
/// an older deepres without the dataset column, are refused in one line naming the file and the
/// fix, and the file is left as it was. ResNet rows may join fc rows (the table keeps models
/// apart).
#[test]
fn probe_rows_of_another_setting_are_never_mixed_into_one_file() {
    let _g = serial();
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("probe.csv");
    let fc = |batch: i64, width: i64, data: DatasetName| ProbeSpec {
        seeds: vec![0],
        batch,
        width,
        data: ProbeData::Named(data),
        ..spec(ProbeModel::Fc, vec![2, 4], vec![Norm::None])
    };
    let rows = probe::run(&fc(16, 64, DatasetName::Synthetic), &csv, true).unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.dataset == DatasetName::Synthetic
        && (r.batch, r.width, r.probe_version) == (16, 64, probe::PROBE_VERSION)));
    let text = std::fs::read_to_string(&csv).unwrap();
    // The same setting resumes: nothing is measured again.
    probe::run(&fc(16, 64, DatasetName::Synthetic), &csv, true).unwrap();
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), text);
    let refused = |spec: &ProbeSpec, what: &str| {
        let err = format!("{:#}", probe::run(spec, &csv, true).unwrap_err());
        assert!(
            err.contains("probe.csv") && err.contains("move the file aside") && !err.contains('\n'),
            "{what}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            text,
            "{what}: the file changed"
        );
    };
    refused(&fc(8, 64, DatasetName::Synthetic), "another batch");
    refused(&fc(16, 32, DatasetName::Synthetic), "another width");
    // Another dataset: rows of another dataset in the file (as a probe of it would leave them).
    let other = text.replace("synthetic,", "cifar10,");
    std::fs::write(&csv, &other).unwrap();
    let err = format!(
        "{:#}",
        probe::run(&fc(16, 64, DatasetName::Synthetic), &csv, true).unwrap_err()
    );
    assert!(
        err.contains("on cifar10") && err.contains("on synthetic"),
        "{err}"
    );
    // Another probe version.
    let old_version = text.replace(&format!(",{}\n", probe::PROBE_VERSION), ",1\n");
    std::fs::write(&csv, &old_version).unwrap();
    let err = format!(
        "{:#}",
        probe::run(&fc(16, 64, DatasetName::Synthetic), &csv, true).unwrap_err()
    );
    assert!(err.contains("probe version 1"), "{err}");
    // A ResNet probe of the same dataset and batch joins the file.
    std::fs::write(&csv, &text).unwrap();
    let resnet = ProbeSpec {
        seeds: vec![0],
        taus: vec!["one".parse().unwrap()],
        ..spec(ProbeModel::Resnet, vec![8], vec![Norm::None])
    };
    assert_eq!(probe::run(&resnet, &csv, true).unwrap().len(), 7);
    // A probe.csv of an older deepres (no dataset column) is refused with the fix.
    let old = "model,depth,blocks,norm,tau_rule,tau,seed,forward_ratio,backward_ratio\nfc,2,2,none,one,1.0,0,1.5,1.5\n";
    std::fs::write(&csv, old).unwrap();
    let err = format!(
        "{:#}",
        probe::run(&fc(16, 64, DatasetName::Synthetic), &csv, true).unwrap_err()
    );
    assert!(
        err.contains("probe.csv")
            && err.contains("without the dataset column")
            && err.contains("move it aside"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), old);
}
