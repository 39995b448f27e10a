//! Chizat (2025, "The Hidden Width of Deep ResNets", arXiv:2509.10167; docs/chizat2025.md): the
//! cached limit's key is pinned, changes with every setting that changes the limit (and not with
//! where the cache lives), and a cached file under another setting's name is refused on load.
use deepres::papers::chizat2025::{self as chizat, Dynamics};
use tch::Device;

mod common;
/// Tests that draw from torch's global RNG run one at a time (seeded, reproducible).
use common::serial as lock;

fn default_limit_key(dim: i64) -> String {
    deepres::util::key::spec_key(&chizat::limit_key(
        dim,
        &Dynamics::default(),
        &chizat::TaskSpec::default(),
        &chizat::LimitSpec::default(),
    ))
}

// Long: the list of every setting of the key, one entry each.
#[test]
#[allow(clippy::too_many_lines)]
fn the_limit_key_is_pinned_and_every_setting_changes_it() {
    // If a field is added to `LimitKey` (or a default changes), this test fails: paste the new
    // value deliberately (cached limits are then recomputed under the new key, never reused).
    assert_eq!(
        default_limit_key(2),
        "e7b12bfe4581928950ecbd05301a1a5282e8e4644a17f2b950275dea080085af"
    );
    let base = default_limit_key(2);
    let key = |dynamics: Dynamics, task: chizat::TaskSpec, lim: chizat::LimitSpec, dim: i64| {
        deepres::util::key::spec_key(&chizat::limit_key(dim, &dynamics, &task, &lim))
    };
    let (d, t, l) = (
        Dynamics::default(),
        chizat::TaskSpec::default(),
        chizat::LimitSpec::default(),
    );
    let changed = [
        ("D", key(d, t, l.clone(), 3)),
        (
            "sigma_u",
            key(Dynamics { sigma_u: 2.0, ..d }, t, l.clone(), 2),
        ),
        (
            "sigma_v",
            key(Dynamics { sigma_v: 2.0, ..d }, t, l.clone(), 2),
        ),
        ("alpha", key(Dynamics { alpha: 2.0, ..d }, t, l.clone(), 2)),
        ("gamma", key(Dynamics { gamma: 1.0, ..d }, t, l.clone(), 2)),
        ("eta", key(Dynamics { eta: 0.5, ..d }, t, l.clone(), 2)),
        ("steps", key(Dynamics { steps: 50, ..d }, t, l.clone(), 2)),
        (
            "task.train",
            key(d, chizat::TaskSpec { train: 16, ..t }, l.clone(), 2),
        ),
        (
            "task.test",
            key(d, chizat::TaskSpec { test: 64, ..t }, l.clone(), 2),
        ),
        (
            "task.seed",
            key(d, chizat::TaskSpec { seed: 1, ..t }, l.clone(), 2),
        ),
        (
            "task.target",
            key(
                d,
                chizat::TaskSpec {
                    target: chizat::Target::OneDirection,
                    ..t
                },
                l.clone(),
                2,
            ),
        ),
        (
            "limit.depth",
            key(
                d,
                t,
                chizat::LimitSpec {
                    depth: 1024,
                    ..l.clone()
                },
                2,
            ),
        ),
        (
            "limit.width",
            key(
                d,
                t,
                chizat::LimitSpec {
                    width: 512,
                    ..l.clone()
                },
                2,
            ),
        ),
        (
            "limit.models",
            key(
                d,
                t,
                chizat::LimitSpec {
                    models: 2,
                    ..l.clone()
                },
                2,
            ),
        ),
        (
            "limit.seed",
            key(
                d,
                t,
                chizat::LimitSpec {
                    seed: 1,
                    ..l.clone()
                },
                2,
            ),
        ),
    ];
    for (field, k) in &changed {
        assert_ne!(k, &base, "changing {field} must change the limit's key");
    }
    // Where the cache lives does not change the limit.
    let elsewhere = chizat::LimitSpec {
        cache: "elsewhere".into(),
        ..l.clone()
    };
    assert_eq!(key(d, t, elsewhere, 2), base);
}

#[test]
fn a_cached_limit_of_another_setting_is_refused() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let lim = chizat::LimitSpec {
        depth: 8,
        width: 8,
        cache: dir.path().join("limits"),
        ..Default::default()
    };
    let dynamics = Dynamics {
        steps: 5,
        ..Default::default()
    };
    let task = chizat::TaskSpec::default();
    let first = chizat::limit(2, &dynamics, &task, &lim, Device::Cpu, true).unwrap();
    assert!(!first.cached);
    let again = chizat::limit(2, &dynamics, &task, &lim, Device::Cpu, true).unwrap();
    assert!(again.cached && again.loss == first.loss);
    // A file copied by hand under another setting's name gives one line naming it and the fix.
    let key = |seed| {
        let l = chizat::LimitSpec {
            seed,
            ..lim.clone()
        };
        chizat::limit_path(
            &l,
            &deepres::util::key::spec_key(&chizat::limit_key(2, &dynamics, &task, &l)),
        )
    };
    std::fs::copy(key(0), key(1)).unwrap();
    let other = chizat::LimitSpec {
        seed: 1,
        ..lim.clone()
    };
    let err = format!(
        "{:#}",
        chizat::limit(2, &dynamics, &task, &other, Device::Cpu, true)
            .err()
            .unwrap()
    );
    let name = key(1).file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains("another setting") && err.contains("delete it"),
        "{err}"
    );
}
