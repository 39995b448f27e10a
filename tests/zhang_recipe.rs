//! The τ paper's tables and Figure Z3 at full scale (`--scale full`: what `make zhang-table1
//! SCALE=full`, `zhang-table2` and `zhang-fig3` train) are its recipe, cell by cell, written
//! out here from the paper (Zhang et al., "Stabilize Deep ResNet with a Sharp Scaling Factor
//! τ", arXiv:1903.07120; docs/zhang2022.md), not read from the run-config defaults:
//! ResNet-20 … 1202 on CIFAR, SGD with momentum 0.9 (not Nesterov), weight decay 10⁻⁴, batch
//! 128, lr 0.1 divided by 10 at epochs 100 and 150 of 200, no warm-up, random crop with 4
//! pixels of padding and horizontal flip, seed 0; Table Z1 with batch norm and the τ code's
//! shortcut (average pool, BN, zero padding), τ = 1 against τ = 1/√L for L residual blocks
//! (0.136 at ResNet-110: 1/√54, the value in the authors' README); Table Z2 without
//! normalization, the scalar biases and τ at lr/10.
use deepres::model::config::{InitScheme, Norm, Shortcut, TauLearnable, TauRule};
use deepres::model::tau::initial_tau;
use deepres::sweep::{Cell, Grid};
use deepres::train::config::{Precision, ScheduleKind};
use std::path::Path;

const DEPTHS: [i64; 6] = [20, 32, 44, 56, 110, 1202];

fn full(file: &str) -> Vec<Cell> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/zhang2022");
    let grid = Grid::load(&root.join(file), Some("full"), &[]).unwrap();
    grid.cells().unwrap()
}

/// What every cell of both tables shares: the paper's training recipe and augmentation.
fn assert_recipe(c: &Cell) {
    let (cfg, t) = (&c.config, &c.config.train);
    let o = &t.optimizer;
    assert_eq!(cfg.seed, 0, "{}", c.name);
    assert_eq!((t.epochs, t.batch_size), (200, 128), "{}", c.name);
    assert_eq!(
        (o.lr, o.momentum, o.weight_decay),
        (0.1, 0.9, 1e-4),
        "{}",
        c.name
    );
    assert!(!o.nesterov, "{}", c.name);
    let s = &t.schedule;
    assert_eq!(s.kind, ScheduleKind::Multistep, "{}", c.name);
    assert_eq!(
        (&s.milestones[..], s.gamma),
        (&[100, 150][..], 0.1),
        "{}",
        c.name
    );
    assert_eq!(s.warmup_epochs, 0, "{}", c.name);
    assert_eq!(t.precision, Precision::Fp32, "{}", c.name);
    assert_eq!(t.label_smoothing, None, "{}", c.name);
    let d = &cfg.data;
    assert_eq!(
        (d.augment.crop_padding, d.augment.hflip, d.augment.cutout),
        (4, true, None),
        "{}",
        c.name
    );
    assert_eq!((d.limit_train, d.limit_test), (None, None), "{}", c.name);
    assert!(!d.coarse_labels, "{}", c.name);
    assert_eq!(cfg.model.width, 1, "{}: 16, 32, 64 channels", c.name);
}

/// L, the number of residual blocks of ResNet-(6n+2): 3n, written out here rather than taken
/// from `model::resnet::blocks_per_stage`, so that a wrong count there fails.
fn blocks(depth: i64) -> i64 {
    (depth - 2) / 2
}

#[test]
fn table_z1_at_full_scale_is_the_papers_recipe() {
    let cells = full("table1.yaml");
    assert_eq!(cells.len(), 2 * DEPTHS.len());
    for c in &cells {
        assert_recipe(c);
        let m = &c.config.model;
        assert!(DEPTHS.contains(&m.depth), "{}", c.name);
        assert_eq!(c.config.data.name.to_string(), "cifar10", "{}", c.name);
        assert_eq!(
            (m.norm, m.shortcut),
            (Norm::Bn, Shortcut::ABn),
            "{}",
            c.name
        );
        assert_eq!(m.init, InitScheme::Kaiming, "{}", c.name);
        assert_eq!(m.tau.learnable, TauLearnable::None, "{}", c.name);
        assert_eq!(c.config.train.mixup_alpha, None, "{}", c.name);
        let tau = initial_tau(&m.tau, blocks(m.depth));
        let want = match c.variant.as_deref() {
            Some("bn") => 1.0,
            Some("bn-tau") => 1.0 / (blocks(m.depth) as f64).sqrt(),
            v => panic!("{}: variant {v:?}", c.name),
        };
        assert!(
            (tau - want).abs() < 1e-12,
            "{}: τ = {tau}, want {want}",
            c.name
        );
        if c.variant.as_deref() == Some("bn-tau") && m.depth == 110 {
            assert!((tau - 0.136).abs() < 5e-4, "τ at ResNet-110: {tau}");
        }
    }
}

#[test]
fn table_z2_at_full_scale_is_the_papers_recipe() {
    let cells = full("table2.yaml");
    assert_eq!(
        cells.len(),
        6 * 2 * DEPTHS.len(),
        "6 variants × CIFAR-10/100 × 6 depths"
    );
    for c in &cells {
        assert_recipe(c);
        let m = &c.config.model;
        let name = c.config.data.name.to_string();
        assert!(name == "cifar10" || name == "cifar100", "{}", c.name);
        assert_eq!(
            (m.norm, m.shortcut),
            (Norm::None, Shortcut::A),
            "{}",
            c.name
        );
        assert_eq!(c.config.train.optimizer.scalar_lr_mult, 0.1, "{}", c.name);
        let l = blocks(m.depth);
        let tau = initial_tau(&m.tau, l);
        let inv_sqrt = 1.0 / (l as f64).sqrt();
        // (init, τ's form, τ₀, mixup) of each variant.
        let (init, learnable, want, mixup) = match c.variant.as_deref() {
            Some("tau1") => (InitScheme::Kaiming, TauLearnable::None, 1.0, None),
            Some("tau-fixed") => (InitScheme::Kaiming, TauLearnable::None, inv_sqrt, None),
            Some("tau-learned") => (InitScheme::Kaiming, TauLearnable::Shared, inv_sqrt, None),
            Some("fixup") => (InitScheme::Fixup, TauLearnable::None, 1.0, None),
            Some("fixup-mixup") => (InitScheme::Fixup, TauLearnable::None, 1.0, Some(1.0)),
            // ReZero's per-block scalar starts at 0 whatever the rule (the model's business).
            Some("rezero") => (InitScheme::Kaiming, TauLearnable::Rezero, tau, None),
            v => panic!("{}: variant {v:?}", c.name),
        };
        assert_eq!((m.init, m.tau.learnable), (init, learnable), "{}", c.name);
        assert!(
            (tau - want).abs() < 1e-12,
            "{}: τ = {tau}, want {want}",
            c.name
        );
        assert_eq!(c.config.train.mixup_alpha, mixup, "{}", c.name);
        if m.tau.rule == TauRule::InvSqrt {
            assert_eq!(m.tau.c, 1.0, "{}", c.name);
        }
    }
}

#[test]
fn figure_z3_at_full_scale_is_the_papers_recipe() {
    let cells = full("fig3.yaml");
    assert_eq!(cells.len(), 3 * 2, "3 variants × ResNet-110, 1202");
    for c in &cells {
        assert_recipe(c);
        let m = &c.config.model;
        assert!([110, 1202].contains(&m.depth), "{}", c.name);
        assert_eq!(c.config.data.name.to_string(), "cifar10", "{}", c.name);
        let l = blocks(m.depth);
        let inv_sqrt = 1.0 / (l as f64).sqrt();
        let (norm, shortcut, learnable, want) = match c.variant.as_deref() {
            Some("bn") => (Norm::Bn, Shortcut::ABn, TauLearnable::None, 1.0),
            Some("bn-tau") => (Norm::Bn, Shortcut::ABn, TauLearnable::None, inv_sqrt),
            Some("nobn-tau") => (Norm::None, Shortcut::A, TauLearnable::Shared, inv_sqrt),
            v => panic!("{}: variant {v:?}", c.name),
        };
        assert_eq!(
            (m.norm, m.shortcut, m.tau.learnable),
            (norm, shortcut, learnable),
            "{}",
            c.name
        );
        let tau = initial_tau(&m.tau, l);
        assert!(
            (tau - want).abs() < 1e-12,
            "{}: τ = {tau}, want {want}",
            c.name
        );
    }
}
