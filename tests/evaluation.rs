//! The test loss and accuracy a run records (metrics.csv's test_loss, test_acc: every table's
//! "best test error" comes from them) and what `deepres eval` reports (loss, top-1, top-5, the
//! per-class CSV), against one pass over the whole test set written here from the
//! definitions: the epoch's weights (best.safetensors), BN in eval mode, the raw test images
//! normalized by the statistics summary.json records, the mean cross-entropy over every image,
//! the fraction whose arg-max is the label, the fraction whose label's logit has fewer than 5
//! logits above it, and per class the images and the right ones. The run evaluates 1100 images
//! in batches of 24 (the last one of 20) and `eval` in batches of 500 (the last of 100), so
//! averaging per batch instead of per image, BN statistics of the batch instead of the running
//! ones, or a batch dropped fails here.
use deepres::data;
use deepres::model::resnet::ResNet;
use deepres::train::{self, metrics, read_summary};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

mod common;
use common::{best_file_epoch, serial, tiny_run};

#[test]
fn recorded_test_loss_and_accuracy_are_one_eval_mode_pass_over_every_image() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_run::config(
        tmp.path(),
        "eval",
        &[
            "data.synthetic_train=256",
            "data.synthetic_test=1100",
            "train.batch_size=32",
            "train.eval_batch_size=24",
            "train.epochs=2",
            "train.optimizer.lr=0.1",
        ],
    );
    {
        let _g = serial();
        train::run(&cfg, &tiny_run::quiet()).unwrap();
    }
    let dir = cfg.run_dir();
    let summary = read_summary(&dir).unwrap();
    let epoch = best_file_epoch(&dir).unwrap();
    let row = metrics::read(&dir.join("metrics.csv")).unwrap()[epoch as usize - 1].clone();
    assert_eq!(row.epoch, epoch);

    // The epoch's model: the architecture of the config, the weights and BN statistics of
    // best.safetensors.
    let mut vs = VarStore::new(Device::Cpu);
    let data = data::load(&cfg.data.spec()).unwrap();
    let net = ResNet::new(&vs.root(), &cfg.model, data.channels, data.num_classes).unwrap();
    vs.load(dir.join("best.safetensors")).unwrap();

    // The raw test set, normalized by the recorded statistics.
    let c = data.channels;
    let stat = |v: &[f64]| {
        Tensor::from_slice(v)
            .to_kind(Kind::Float)
            .view([1, c, 1, 1])
    };
    let x = (data.test.images.to_kind(Kind::Float) / 255.0 - stat(&summary.input_mean))
        / stat(&summary.input_std);
    let y = &data.test.labels;
    assert_eq!(y.size(), [1100]);
    let logits = tch::no_grad(|| net.forward_t(&x, false)).to_kind(Kind::Double);
    let n = 1100.0;
    // −log softmax of the label, averaged over the images.
    let nll = -(logits
        .log_softmax(-1, Kind::Double)
        .gather(1, &y.unsqueeze(1), false));
    let loss = nll.sum(Kind::Double).double_value(&[]) / n;
    let right = logits.argmax(-1, false).eq_tensor(y);
    let acc = right.sum(Kind::Double).double_value(&[]) / n;
    eprintln!(
        "epoch {epoch}: recorded loss {} acc {}; one pass {loss} {acc}",
        row.test_loss, row.test_acc
    );
    assert!(
        (row.test_loss / loss - 1.0).abs() < 1e-5,
        "test_loss {} vs {loss}",
        row.test_loss
    );
    assert_eq!(row.test_acc, acc);
    // Not a vacuous match: the model is past chance and not perfect, so a miscount shows.
    assert!(acc > 0.0 && acc < 1.0, "{acc}");
    check_eval(&dir, &logits, y, (loss, acc), data.num_classes);
}

/// `deepres eval` of the best weights of run `dir` against the one pass's `logits` of the
/// labels `y` (and its `loss` and `acc`): top-5 as the rank of the label's logit, per class by
/// counting.
fn check_eval(
    dir: &std::path::Path,
    logits: &Tensor,
    y: &Tensor,
    (loss, acc): (f64, f64),
    classes: i64,
) {
    let n = y.size()[0] as f64;
    let right = logits.argmax(-1, false).eq_tensor(y);
    let above = logits.gt_tensor(&logits.gather(1, &y.unsqueeze(1), false));
    let rank = above.sum_dim_intlist([1i64].as_slice(), false, Kind::Int64);
    let top5 = rank.lt(5).sum(Kind::Double).double_value(&[]) / n;
    let labels = Vec::<i64>::try_from(y).unwrap();
    let hits = Vec::<bool>::try_from(&right).unwrap();
    let mut per_class = vec![(0i64, 0i64); classes as usize];
    for (&c, &hit) in labels.iter().zip(&hits) {
        per_class[c as usize].0 += 1;
        per_class[c as usize].1 += hit as i64;
    }
    let request = deepres::train::eval::EvalRequest {
        target: dir.to_path_buf(),
        weights: deepres::train::export::Weights::Best,
        data: None,
        data_root: None,
        tau: None,
        out: None,
        device: Device::Cpu,
    };
    let text = deepres::train::eval::eval(&request).unwrap();
    let want =
        format!("1100 test images of synthetic: loss {loss:.4}, top-1 {acc:.4}, top-5 {top5:.4}");
    assert!(text.contains(&want), "{text}\nwant {want}");
    assert!(top5 > acc && top5 < 1.0, "{top5}");
    let csv = std::fs::read_to_string(dir.join("eval-best-synthetic.csv")).unwrap();
    let got: Vec<(i64, i64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(got, per_class);
}
