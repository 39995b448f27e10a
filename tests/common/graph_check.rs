//! The CUDA-graph tests' measures: the mean loss of one training step read right after it
//! (tests/gpu_graph.rs), and the check that a graphed run's per-step losses follow an ordinary
//! run's as closely as a second ordinary run does (tests/gpu_graph.rs, tests/gpu_train_graph.rs).
use deepres::model::ResNet;
use deepres::train::config::Precision;
use deepres::train::graph::Stepper;
use deepres::train::recipe::Targets;
use deepres::train::sgd::Sgd;
use deepres::train::StepSums;
use tch::Tensor;

/// One step of `stepper` on (x, y) at rate `lr`; returns the step's mean loss (read from the
/// device sums after the step: a sync per step, which changes no result).
pub fn step_loss(
    stepper: &mut Stepper,
    (net, opt): (&ResNet, &mut Sgd),
    (x, y): (&Tensor, &Tensor),
    lr: f64,
    precision: Precision,
    sums: &mut StepSums,
) -> f64 {
    let before = sums.loss.double_value(&[]);
    let targets = Targets::hard(y);
    (stepper.step(net, opt, x, &targets, lr, precision, true, sums)).unwrap();
    (sums.loss.double_value(&[]) - before) / y.size()[0] as f64
}

/// Asserts that at every step k the graphed run's loss is within max(4·D, `floor`·ℓ_k) of the
/// ordinary run's ℓ_k (`plain`), D the largest per-step difference between two ordinary runs
/// (`plain`, `again`: cuDNN may pick or round differently from run to run), after printing
/// the largest differences, the first step at which the graphed loss is not the ordinary one
/// to the last bit, and the first and last 8 steps' mean losses (`what` names the run).
pub fn assert_follows(what: &str, plain: &[f64], again: &[f64], graphed: &[f64], floor: f64) {
    let largest =
        |a: &[f64]| {
            (a.iter().zip(plain).map(|(x, y)| (x - y).abs()).enumerate())
                .fold((0, 0.0), |m, (k, d)| if d > m.1 { (k, d) } else { m })
        };
    let ((d_k, d), (g_k, g)) = (largest(again), largest(graphed));
    let ends = |l: &[f64]| {
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        (mean(&l[..8]), mean(&l[l.len() - 8..]))
    };
    let ((p0, p1), (g0, g1)) = (ends(plain), ends(graphed));
    let first = |a: &[f64]| a.iter().zip(plain).position(|(x, y)| x != y);
    eprintln!(
        "{what}: {} steps, ordinary loss {p0:.4} → {p1:.4}, graphed {g0:.4} → {g1:.4} (first and \
         last 8); graphed vs ordinary: largest |Δloss| {g:.3e} (step {g_k}, loss {:.4}), first \
         unequal step {:?}; ordinary vs ordinary: {d:.3e} (step {d_k}), first unequal step {:?}",
        plain.len(),
        plain[g_k],
        first(graphed),
        first(again)
    );
    assert_eq!(plain.len(), graphed.len());
    for (k, (a, b)) in plain.iter().zip(graphed).enumerate() {
        assert!(
            (a - b).abs() <= (4.0 * d).max(floor * a.abs()),
            "{what} step {k}: graphed loss {b} vs ordinary {a} (two ordinary runs differ by up to {d})"
        );
    }
}
